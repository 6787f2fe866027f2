"""A webhook receiver on a free loopback port, for the alert tests: it answers `status` (after `delay`
seconds) and keeps every JSON body it was sent (`received`, with the request path)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, path: str = "/hooks/alerts") -> None:
        self.received: list[dict] = []
        self.status = 200
        self.delay = 0.0  # seconds before answering (a slow receiver)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.received.append({"path": self.path, "json": json.loads(body)})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@contextmanager
def webhook_receiver(path: str = "/hooks/alerts") -> Iterator[Receiver]:
    receiver = Receiver(path)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
