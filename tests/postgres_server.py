"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` package (`make test` installs it), a
new cluster in a temporary directory, on a free loopback port, stopped and deleted after.

PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to the `postgres` user the package
creates (or `nobody`) and its commands run through `runuser`. Nothing is mocked: the tests talk to this server
with the same drivers the product uses.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _server_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return found[-1]  # the newest installed major version
    raise RuntimeError(
        f"PostgreSQL's {name} is not installed: `make test` installs Debian's postgresql package "
        "(or run `apt-get install postgresql`)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster; yield the URL of its `postgres` database (user `postgres`, trust on loopback)."""
    root = Path(tempfile.mkdtemp(prefix="cliniko-reviews-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(root, user)
        as_user = ["runuser", "-u", user, "--"]
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True)
        if done.returncode:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}{log}")

    run(_server_binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
        "--locale=C", "--no-sync")  # fmt: skip
    # A test server: fsync off (a lost machine loses nothing of value), many connections (Dagster's
    # daemon, code server and each run hold their own).
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    log = str(root / "server.log")
    run(_server_binary("pg_ctl"), "-D", str(data), "-l", log, "-w", "-o", options, "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, _server_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def create_database(server_url: str, name: str) -> str:
    """A new, empty database on the server of `server_url`; returns its URL."""
    import psycopg2

    con = psycopg2.connect(server_url)
    try:
        con.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with con.cursor() as cur:
            cur.execute(f'create database "{name}"')
    finally:
        con.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
