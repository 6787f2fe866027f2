"""`cliniko-reviews admin` as an operator runs it: a real process, its own logging, the manual replayed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipeline.registry.manual import STEP, replay_manual
from pipeline.settings import PROJECT_ROOT

MANUAL_KEY = STEP["smb_group"].payload["integrationGroupProperties"][0]["propertyValue"]  # type: ignore[index]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "REGISTRY_SECRET_KEY")}
    return {**env, "DATA_DIR": str(tmp_path), **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "admin", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_admin_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    process = _admin("--host", "0.0.0.0", "--port", "1", env=_env(tmp_path))
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "refusing to serve the admin API on 0.0.0.0 without ADMIN_TOKEN" in output
    assert not (tmp_path / "registry.sqlite3").exists()


def test_admin_command_serves_the_manual_with_a_token_and_logs_no_key(tmp_path: Path) -> None:
    port, token = _free_port(), "t0ken-for-the-test"
    process = _admin("--port", str(port), env=_env(tmp_path, ADMIN_TOKEN=token))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/admin/health", headers={"Authorization": f"Bearer {token}"}).is_success:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "admin server did not come up"
            time.sleep(0.1)
        assert httpx.get(f"{url}/admin/groups").status_code == 401
        replies = replay_manual(url, token=token)
        assert [reply.status_code for reply in replies.values()] == [201, 200, 200, 200, 200, 200, 201, 201]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert '"PUT /integration/add/businessintegrationgroup HTTP/1.1" 201' in output
    assert output.count("REGISTRY_SECRET_KEY is not set") == 1
    assert MANUAL_KEY not in output and MANUAL_KEY[:-4] not in output and token not in output
    assert (tmp_path / ".registry_secret_key").stat().st_mode & 0o777 == 0o600
