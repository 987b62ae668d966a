"""What ``creditsd serve`` adds to uvicorn's HTTP protocol against hostile or broken
clients: a deadline for each request to arrive, a cap on open connections, and a log that
says a repeated failure once in a while instead of every time."""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from creditsd.api.errors import RETRY_AFTER_SECONDS, TIMED_OUT_SCOPE, TOO_SLOW_MESSAGE
from creditsd.kit import jsonio
from creditsd.kit.repeats import repeats

log = logging.getLogger("creditsd.serve")

_RESERVED_FILES = 64  # descriptors kept for the database pool, log files and the listener


def _response(status: int, reason: str, code: str, message: str, extra: str = "") -> bytes:
    body = jsonio.render({"error": {"code": code, "message": message}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


class Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: each request must arrive whole (headers and
    body) within ``request_timeout`` seconds of its first byte (or of the connection, for
    the first), else 408 and the connection is closed; a connection beyond
    ``max_connections`` is answered 503 with ``Retry-After`` and closed."""

    request_timeout: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refused = True
            repeats.say(log, "too many connections; refusing new ones with 503")
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._disarm()
            self._close_with(TOO_MANY)
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        started = self.cycle is not None and not self.cycle.response_complete
        if started and self.cycle.response_started:
            self.transport.close()  # answered already; only the rest never came
        elif self.parser is not None and self._receiving():
            if started:  # the app is reading its body: its log line says 408, not 499
                self.cycle.scope[TIMED_OUT_SCOPE] = True  # type: ignore[literal-required]
            self._close_with(TOO_SLOW)
        else:
            self.transport.close()  # not a byte of a request: nothing to answer

    def _receiving(self) -> bool:
        """Whether part of a request has arrived (else the connection sent nothing)."""
        return bool(self.headers) or bool(getattr(self, "url", b""))

    def _close_with(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


TOO_SLOW = _response(408, "Request Timeout", "request_timeout", TOO_SLOW_MESSAGE)
TOO_MANY = _response(
    503,
    "Service Unavailable",
    "unavailable",
    "too many open connections; retry shortly",
    f"retry-after: {RETRY_AFTER_SECONDS}\r\n",
)


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Report the event loop's errors (a failing ``accept()`` when descriptors run out
    is one per attempt) through :func:`repeats.say` instead of a traceback each time."""

    def handle(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        message = str(context.get("message", "event loop error"))
        said = f"{message}: {type(error).__name__}: {error}" if error else message
        repeats.say(log, said)

    loop.set_exception_handler(handle)


def guarded(request_timeout: float, max_connections: int) -> type[Guarded]:
    """:class:`Guarded` with these limits, for ``uvicorn.Config(http=…)``."""
    return type(
        "Guarded",
        (Guarded,),
        {"request_timeout": request_timeout, "max_connections": max_connections},
    )


def open_files_allowed(wanted: int) -> int:
    """Raise this process's descriptor limit as far as allowed, and return how many
    connections it leaves room for (at most ``wanted``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - _RESERVED_FILES))
