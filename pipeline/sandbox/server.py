"""Serving the sandbox emulators with uvicorn: in the foreground for `cliniko-reviews sandbox`, or in a
background thread on a free port for tests and benchmarks (other helpers run tests at the same time, so a
fixed port would collide)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from pipeline.sandbox.cliniko_emulator import ClinikoEmulator, ClinikoEmulatorConfig
from pipeline.sandbox.generator import Account

ASGIApp = Callable[..., Any]


def _config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


@contextmanager
def running_app(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve an ASGI app from a daemon thread; yields `http://host:port`. The socket is bound before the
    thread starts, so the port is ours (port 0 = any free port) and requests made right away connect."""
    sock = _bound_socket(host, port)
    server = uvicorn.Server(_config(app))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sandbox-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.005)
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_cliniko(
    emulator: ClinikoEmulator | ClinikoEmulatorConfig, host: str = "127.0.0.1"
) -> Iterator[str]:
    """The Cliniko emulator on a free loopback port; yields its API base URL, `http://127.0.0.1:<port>/v1`
    (what `CLINIKO_BASE_URL` takes). Pass an emulator instance to read its `request_log` afterwards."""
    app = emulator if isinstance(emulator, ClinikoEmulator) else ClinikoEmulator(emulator)
    try:
        with running_app(app, host=host) as url:
            yield f"{url}/v1"
    finally:
        if app is not emulator:
            app.close()


class _LinkedServer(uvicorn.Server):
    """Ctrl-C stops every server of the sandbox, not only the one whose signal handler was installed last."""

    def __init__(self, config: uvicorn.Config, group: list[uvicorn.Server]) -> None:
        super().__init__(config)
        self.group = group
        group.append(self)

    def handle_exit(self, sig: int, frame: Any) -> None:
        for server in self.group:
            uvicorn.Server.handle_exit(server, sig, frame)


def serve_sandbox(
    apps: list[tuple[ASGIApp, int]], host: str = "127.0.0.1", on_bound: Callable[[], None] | None = None
) -> None:
    """Serve each (app, port) in this process until interrupted: the Cliniko emulator and, beside it, the
    Birdeye emulator. All sockets are bound first so a busy port fails before anything serves; `on_bound`
    runs then (connections made from that moment wait in the listen backlog until the servers start)."""
    group: list[uvicorn.Server] = []
    sockets = [_bound_socket(host, port) for _, port in apps]
    if on_bound is not None:
        on_bound()
    servers = [_LinkedServer(_config(app), group) for app, _ in apps]

    async def serve_all() -> None:
        await asyncio.gather(
            *(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True))
        )

    try:
        asyncio.run(serve_all())
    finally:
        for sock in sockets:
            sock.close()


def write_sandbox_manifest(path: Path, accounts: list[Account], cliniko_url: str, birdeye_url: str) -> None:
    """What a client of the sandbox needs (fake keys, business names, base URLs), written atomically."""
    body = {
        "cliniko_base_url": cliniko_url,
        "birdeye_base_url": birdeye_url,
        "cliniko_accounts": [
            {
                "name": account.name,
                "api_key": account.api_key,
                "businesses": [
                    b["business_name"].strip() for b in account.businesses if not b.get("archived_at")
                ],
            }
            for account in accounts
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(body, indent=2))
    partial.replace(path)
