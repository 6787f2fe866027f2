"""A fake wall clock shared by every process a test starts: Debian's libfaketime 0.9.10, preloaded.

Fake time is real time plus one offset, kept as whole seconds in one file (`faketime.rc` in the clock's
directory). Every process started with `clock.env()`, and every process those start, reads that file each
real second, so a jump written by the test is seen by processes that are already running once `set()` or
`advance()` returns. The test process itself is not faked: it only writes the file.

Why each variable (checked against libfaketime 0.9.10's source and by tests/integration/test_fakeclock.py):

- `FAKETIME_TIMESTAMP_FILE` + `FAKETIME_CACHE_DURATION=0`: the offset is re-read once each real second,
  so a jump shows within a second; `set()` and `advance()` wait that second, so when they return every
  process sees the new time. Not `FAKETIME_NO_CACHE=1` (re-read on every call): libfaketime 0.9.10 reads
  and parses the file into static buffers without a lock, and with every call of every thread doing so, a
  thread under load now and then got the real time (seen in the calendar test: eight posting threads, one
  Birdeye rate-limit slot stamped two months ahead). Read once a second, the window is all but closed and a
  racing reader parses the same text. `libfaketimeMT.so.1` locks it instead, but its code servers left
  per-process /dev/shm objects behind. `FAKETIME` itself must NOT be set: it wins over the file, which is
  then never read.
- `FAKETIME_DONT_FAKE_MONOTONIC=1`: CLOCK_MONOTONIC stays real, so sleeps, lock and queue waits with a
  timeout and grpc deadlines measure real seconds (with a faked monotonic clock, Python's timed waits
  hang: libfaketime issue 390). The shim below fixes the one call this breaks.
- `FAKETIME_FORCE_MONOTONIC_FIX=0`: with glibc >= 2.30 libfaketime otherwise "fixes" the deadline of every
  `pthread_cond_timedwait` on a CLOCK_MONOTONIC condition variable (Python's GIL waits on one) as if
  that clock were faked: the deadline lands in the distant past and the wait returns at once, every time
  (a busy loop). With 0, monotonic deadlines pass through untouched.
- `NO_FAKE_STAT=1`: file times stay real. libfaketime fakes them for code that calls the `stat`,
  `fstat`, `lstat` or (pre-glibc-2.33 builds: manylinux wheels) `__xstat*` symbols; there every call
  re-reads the clock file three times under a semaphore shared by all faked processes (one killed inside
  would block the others), and every jump would shift the times of every file.
- `FAKETIME_SHARED`: libfaketime otherwise creates `/dev/shm/faketime_shm_<pid>` and
  `/dev/shm/sem.faketime_sem_<pid>` in each process started from outside, left behind whenever that
  process is killed or `exec`s, and fatal to a later process that gets the same pid ("shm_open failed:
  File exists"). The clock creates one pair itself, as the `faketime` wrapper does, hands it to every
  child, and removes it in `close()`.
- Offsets are whole seconds: libfaketime parses them with `atof()` (locale-dependent), and a whole-second
  offset keeps its shared `timespec` arithmetic free of the carry that another thread could see half-done.
  `set()` rounds up, so the fake time is at or up to a second after the moment asked for.

"""

from __future__ import annotations

import ctypes
import math
import os
import re
import secrets
import shutil
import struct
import subprocess
import sysconfig
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Preloaded before libfaketime. libfaketime 0.9.10's clock_nanosleep() converts every TIMER_ABSTIME
# deadline with the fake *realtime* offset, even for CLOCK_MONOTONIC while FAKETIME_DONT_FAKE_MONOTONIC=1
# keeps that clock real. Python's time.sleep() is clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...): it
# would get a negative deadline and fail with EINVAL (libfaketime issue 426). So monotonic sleeps go
# straight to the kernel; every other clock goes on to the next clock_nanosleep (libfaketime's).
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem) {
    static clock_nanosleep_fn next;
    if (clock_id == CLOCK_MONOTONIC) {
        /* clock_nanosleep() returns the error number and leaves errno alone; syscall() sets errno */
        int saved_errno = errno;
        int err = syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == -1 ? errno : 0;
        errno = saved_errno;
        return err;
    }
    if (next == NULL) next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock_id, flags, req, rem);
}
"""

SHM_DIR = Path("/dev/shm")
# libfaketime's own per-process objects, /dev/shm/faketime_shm_<pid> and /dev/shm/sem.faketime_sem_<pid>,
# and a FakeClock's, faketime_shm_fakeclock_<pid of the test process>_<random> (and sem.…)
_STALE_CANDIDATE = re.compile(r"^(?:faketime_shm_|sem\.faketime_sem_)(?:fakeclock_)?(\d+)(?:_[0-9a-f]+)?$")
# struct ft_shared_s (faketime_common.h): ticks, file_idx, then the start time per clock (realtime,
# monotonic, monotonic_raw, boottime) as timespecs; tv_nsec = -1 means "not set yet", as the wrapper does.
_SHARED_STATE = struct.pack("<QQ8q", 0, 0, 0, -1, 0, -1, 0, -1, 0, -1)


def libfaketime_path() -> Path | None:
    """Debian's libfaketime.so.1 (package libfaketime, pulled in by faketime), in the multiarch dir."""
    candidates = []
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        candidates.append(Path("/usr/lib") / multiarch / "faketime/libfaketime.so.1")
    candidates += sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return next((path for path in candidates if path.is_file()), None)


def require_faketime() -> Path:
    """The libfaketime path; a clear error if Debian's libfaketime or gcc is missing."""
    missing = []
    library = libfaketime_path()
    if library is None:
        missing.append(
            "libfaketime (Debian package faketime: /usr/lib/<multiarch>/faketime/libfaketime.so.1)"
        )
    if shutil.which("gcc") is None:
        missing.append("gcc (compiles the clock's clock_nanosleep shim)")
    if missing:
        raise RuntimeError(
            "The fake clock needs " + " and ".join(missing) + ". Run `make test`: its `faketime` target "
            "installs them (or: apt-get install faketime gcc libc6-dev)."
        )
    assert library is not None
    return library


def remove_stale_faketime_objects() -> list[str]:
    """Removes the /dev/shm objects of libfaketime and of FakeClocks whose creating process is gone.

    Left by killed processes (a test process killed before `close()` leaves its clock's pair). Only dead
    processes' objects go. Stale per-process ones are not only litter: a later process that gets the same
    pid exits with "shm_open failed: File exists". Returns the names removed.
    """
    removed = []
    for entry in SHM_DIR.glob("*faketime_*"):
        match = _STALE_CANDIDATE.match(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        try:
            entry.unlink()
            removed.append(entry.name)
        except FileNotFoundError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_shared_objects(tag: str) -> tuple[str, list[Path]]:
    """The semaphore and shared memory libfaketime's processes share (what the faketime wrapper creates)."""
    sem_name, shm_name = f"/faketime_sem_{tag}", f"/faketime_shm_{tag}"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
    libc.sem_close.argtypes = [ctypes.c_void_p]
    semaphore = libc.sem_open(sem_name.encode(), os.O_CREAT | os.O_EXCL, 0o600, 1)
    if not semaphore:  # SEM_FAILED
        err = ctypes.get_errno()
        raise OSError(err, f"sem_open({sem_name}) failed: {os.strerror(err)}")
    libc.sem_close(semaphore)
    paths = [SHM_DIR / f"sem.{sem_name[1:]}", SHM_DIR / shm_name[1:]]
    fd = os.open(paths[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, _SHARED_STATE)
    finally:
        os.close(fd)
    return f"{sem_name} {shm_name}", paths


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class FakeClock:
    """Fake wall-clock time for child processes: real time + one offset, jumped only forward.

    `FakeClock(directory, start)` compiles the shim into `directory`, writes the clock file there and sets
    the fake time to `start`. Start children with `env=clock.env()`; use `set()` / `advance()` to jump and
    `now()` for the time they see. Call `close()` (or use it as a context manager) when the children are gone.
    """

    def __init__(self, directory: Path, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.library = require_faketime()
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock_file = self.directory / "faketime.rc"
        self.shim = self.directory / "fakeclock_shim.so"
        source = self.directory / "fakeclock_shim.c"
        source.write_text(SHIM_SOURCE)
        compiled = subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(self.shim), str(source), "-ldl"],
            capture_output=True,
            text=True,
        )
        if compiled.returncode != 0:
            raise RuntimeError(
                f"gcc could not compile the fake clock's shim (is libc6-dev installed? `make test` "
                f"installs it):\n{compiled.stderr}"
            )
        self._lock = threading.Lock()
        self._offset = math.ceil(start.timestamp() - time.time())
        self._write_offset()
        remove_stale_faketime_objects()
        self._shared, self.shared_objects = _create_shared_objects(
            f"fakeclock_{os.getpid()}_{secrets.token_hex(4)}"
        )
        self._cleanup = weakref.finalize(self, _unlink_all, self.shared_objects)

    @property
    def offset(self) -> timedelta:
        """Fake time minus real time."""
        return timedelta(seconds=self._offset)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a child process (`base`, default `os.environ`, plus the fake clock)."""
        env = {
            key: value
            for key, value in (os.environ if base is None else base).items()
            if not key.startswith("FAKETIME") and key not in ("NO_FAKE_STAT", "DONT_FAKE_MONOTONIC")
        }
        ours = [str(self.shim), str(self.library)]
        others = [p for p in re.split(r"[:\s]+", env.get("LD_PRELOAD", "")) if p and p not in ours]
        env["LD_PRELOAD"] = ":".join(ours + others)
        env["FAKETIME_TIMESTAMP_FILE"] = str(self.clock_file)
        env["FAKETIME_CACHE_DURATION"] = "0"
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        env["FAKETIME_FORCE_MONOTONIC_FIX"] = "0"
        env["NO_FAKE_STAT"] = "1"
        env["FAKETIME_SHARED"] = self._shared
        return env

    def now(self) -> datetime:
        """The fake time children see now (aware, UTC)."""
        return datetime.fromtimestamp(time.time() + self._offset, UTC)

    def set(self, moment: datetime) -> None:
        """Jumps to `moment` (at or up to a second after it); ValueError if that is backwards."""
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        with self._lock:
            delta = moment.timestamp() - (time.time() + self._offset)
            if delta < 0:
                raise ValueError(f"the fake clock only jumps forward: {moment} is before {self.now()}")
            self._offset += math.ceil(delta)
            self._write_offset()

    def advance(self, delta: timedelta) -> None:
        """Jumps forward by `delta` (rounded up to whole seconds)."""
        if delta < timedelta(0):
            raise ValueError(f"the fake clock only jumps forward, not by {delta}")
        with self._lock:
            self._offset += math.ceil(delta.total_seconds())
            self._write_offset()

    def processes(self) -> list[int]:
        """Pids of the live processes started with this clock's environment, at any depth."""
        marker = f"FAKETIME_SHARED={self._shared}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        pids.append(int(entry.name))
                except OSError:  # gone meanwhile, or not ours to read
                    pass
        return pids

    def close(self) -> None:
        """Removes the clock's /dev/shm objects, and those dead processes left (`remove_stale_...`).

        The clock file stays: a child that outlives the clock would otherwise fall back to real time.
        """
        self._cleanup()
        remove_stale_faketime_objects()

    def __enter__(self) -> FakeClock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write_offset(self) -> None:
        # Readers open the file anew each second: replace it whole, never truncate it in place. A reader
        # re-reads at its first call in a later real second than its last read, so once the real second
        # has turned, every call anywhere sees the new offset.
        tmp = self.clock_file.with_name(self.clock_file.name + ".tmp")
        tmp.write_text(f"{self._offset:+d}\n")
        os.replace(tmp, self.clock_file)
        self.jumped_at = self.now()
        time.sleep(1.0 - time.time() % 1.0 + 0.02)
