"""A local HTTP receiver for deliveries: it records what arrives and fails on demand."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int  # the status it got

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # Workers keep 16 deliveries in flight each; the default backlog of 5 would reset some.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender that gave up waiting (a delivery's timeout) is expected, not an error
        to print; anything else still is."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Receiver:
    """``with Receiver() as receiver``: a server on 127.0.0.1; ``receiver.url``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failures_left = 0  # answer 503 to this many requests first
        self.delay = 0.0  # seconds to wait before answering
        self.routes: set[str] | None = None  # the paths it has (others 404); None: every one
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    failing = receiver.failures_left > 0
                    receiver.failures_left -= failing
                    missing = receiver.routes is not None and self.path not in receiver.routes
                    receiver.received.append(
                        Received(
                            self.path,
                            dict(self.headers.items()),
                            body,
                            time.monotonic(),
                            404 if missing else 503 if failing else 200,
                        )
                    )
                time.sleep(receiver.delay)
                self.send_response(404 if missing else 503 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def bodies(self, path: str | None = None) -> list[Any]:
        """The JSON bodies that arrived (at ``path``), oldest first."""
        with self._lock:
            return [r.json() for r in self.received if path is None or r.path == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
