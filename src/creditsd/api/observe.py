"""Every HTTP request gets a request id, one JSON access-log line and a latency sample.

:class:`Observed` wraps the whole app, FastAPI's error middleware and the charge fast lane
included, so every answer (a 500 too) carries ``X-Request-Id`` and is logged once. A
client's own ``X-Request-Id`` is kept when it is 1–128 visible ASCII characters (``!`` to
``~``); any other value, or none, gets a fresh 32-hex-digit id. A line of
``creditsd.access`` reads::

    {"time": "2026-11-02T10:00:00.123456Z", "request_id": "9f1c…", "method": "POST",
     "route": "/v1/charges", "path": "/v1/charges", "status": 201, "duration_ms": 3.412,
     "client": "10.0.0.7", "key_id": "key_…", "key_name": "chat-web"}

``route`` is the route's template (null when no route matched); ``path`` leaves the query
string out; ``key_id`` and ``key_name`` name the API key that authenticated, else null.
Secrets, headers and bodies are never logged.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import IO

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditsd import jsonio
from creditsd.api.auth import API_KEY
from creditsd.keys.service import ApiKey

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"[!-~]{1,128}")

access_log = logging.getLogger("creditsd.access")

REQUEST_SECONDS = Histogram(
    "creditsd_http_request_duration_seconds",
    "HTTP requests by method, route template (unmatched: none) and status, from the "
    "request's arrival to the end of its answer.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Observed:
    """ASGI middleware: request id, access log and latency of every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        status = 500  # what the server answers when the app fails before it does

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _record(scope, request_id.decode(), status, time.perf_counter() - started)


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's request id when it is acceptable, else a new one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.fullmatch(value):
            return value
    return secrets.token_hex(16).encode()


def _record(scope: Scope, request_id: str, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", None)
    REQUEST_SECONDS.labels(scope["method"], route or "unmatched", str(status)).observe(seconds)
    if not access_log.isEnabledFor(logging.INFO):
        return
    key: ApiKey | None = scope.get(API_KEY)
    client = scope.get("client")
    line = {
        "time": jsonio.format_timestamp(datetime.now(UTC)),
        "request_id": request_id,
        "method": scope["method"],
        "route": route,
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": client[0] if client else None,
        "key_id": key.id if key else None,
        "key_name": key.name if key else None,
    }
    access_log.info(jsonio.render(line).decode())


def log_access_to(stream: IO[str]) -> None:
    """Write the access log, one JSON line per request, to ``stream`` (``creditsd serve``:
    standard output), and nowhere else."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
