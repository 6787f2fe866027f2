"""`dagster-webserver -w workspace.yaml` as a data engineer starts it, in a session of its own (it spawns a
code server; the whole group is stopped at the end), and its GraphQL API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import httpx
import pytest

from pipeline.demo import wait_until
from pipeline.settings import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dagster_webserver(dagster_home: Path, data_dir: Path, log_path: Path) -> Iterator[str]:
    """The webserver over `dagster_home`'s instance and `data_dir`, on a free loopback port: its URL."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "DATA_DIR": str(data_dir)}
    port = _free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(
                lambda: httpx.get(f"{url}/server_info", timeout=2).is_success,
                "dagster-webserver",
                process,
                120,
            )
        except click.ClickException:
            pytest.fail(f"dagster-webserver did not come up:\n{log_path.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]
