"""The proxy's HTTP/1.1 client for its upstream calls: kept-alive connections, pooled per
origin, each carrying one call at a time.

Why not httpx: under load its pool bookkeeping, the readability check of each pooled
socket before each request, and anyio's cancel scopes and locks took over a third of the
proxy's CPU per call. The proxy needs much less of HTTP: a ``POST`` of a body it holds
whole, answers read in order, one timeout. So a connection is an :class:`asyncio.Protocol`
that writes each request in one ``write`` and feeds what comes back to httptools' response
parser; an idle connection the upstream closes is taken out of the pool by its own
``eof_received``/``connection_lost``, with no system call before reuse.

What it speaks: HTTP/1.1 (offered by ALPN over TLS, with the system's certificate
verification); bodies by ``Content-Length``, chunked, or up to the close; a ``gzip`` or
``deflate`` answer decoded (none is asked for, since the proxy relays what it reads, but
an upstream may compress anyway); a ``1xx`` interim answer skipped, as RFC 9110 lets a
client do (none is expected: no ``Expect: 100-continue`` is sent). Every failure (no
connection, a timeout, an answer cut off or unreadable) is one :class:`UpstreamError`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from creditsd.version import VERSION

READ_AHEAD = 256 << 10  # unread bytes of an answer past which its socket waits for the reader
MAX_IDLE = 256  # idle connections kept per origin
# An idle connection older than this is closed, not reused (as the httpx client this
# replaced was set).
IDLE_SECONDS = 60.0
USER_AGENT = f"creditsd/{VERSION}"

Origin = tuple[str, str, int]  # scheme, host, port


class UpstreamError(Exception):
    """The upstream could not be reached, sent nothing for the timeout, or sent an answer
    cut off or unreadable."""


class _Unanswered(UpstreamError):
    """The connection closed before a byte of the answer came."""


class Headers(Mapping[str, str]):
    """An answer's headers, whatever the case of their names: ``headers["Retry-After"]``
    is ``headers["retry-after"]``; a repeated header's values joined by ``", "``."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._fields: dict[str, str] = {}
        for raw_name, raw_value in fields:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            known = self._fields.get(name)
            self._fields[name] = value if known is None else f"{known}, {value}"

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class Answer:
    """One answer, from its head on: ``status_code`` and ``headers`` are there once
    :meth:`UpstreamClient.post` returns; the body comes by :meth:`aiter_bytes`.

    Read to its end, its connection goes back to the pool when both sides keep it alive;
    closed (:meth:`aclose`) before that, its connection is closed, and the upstream hears
    the hang-up. The parser's callbacks (``on_…``) fill it as bytes arrive."""

    def __init__(self, connection: _Connection) -> None:
        self.status_code = 0  # 0 until the head has come
        self.headers = Headers([])
        self._complete = False  # the whole body has come
        self._received = False  # a byte of it has come
        self._connection = connection
        self._parser = httptools.HttpResponseParser(self)
        self._fields: list[tuple[bytes, bytes]] = []
        self._parts: list[bytes] = []  # the body as it came, not yet taken
        self._unread = 0
        self._paused = False  # the socket is not read until the parts are taken
        self._keep_alive = False  # both sides allow another request on the connection
        self._decode: Callable[[bytes], bytes] | None = None
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._done = False  # the connection was handed back or closed

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status_code < 300

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, as it arrives (decoded, if the upstream compressed it), waiting at
        most the timeout for each part; :class:`UpstreamError` if it breaks off."""
        while True:
            if self._parts:
                yield self._take()
            elif self._error is not None:
                raise self._error
            elif self._complete:
                self._release()
                return
            else:
                await self._arrival()

    async def aclose(self) -> None:
        """Done with the answer: one not read to its end closes its connection."""
        if not self._done:
            self._done = True
            self._connection.close_now()

    # what its connection calls

    async def head(self) -> None:
        """Wait until the head has come, at most the timeout between the bytes."""
        while not self.status_code:
            if self._error is not None:
                raise self._error
            await self._arrival()

    def feed(self, data: bytes) -> None:
        """Parse bytes the upstream sent; wake whoever waits for them."""
        self._received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self._complete:
                self.fail(UpstreamError(f"an unreadable answer: {exc!r}"))
                return
            self._connection.close_now()  # more than the answer: the connection is spoilt
        if self._complete:
            self._connection.answer = None
        elif self._unread > READ_AHEAD and not self._paused:
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def cut_off(self, exc: Exception | None) -> None:
        """The connection ended before the answer did: that ends an answer whose length
        is the connection's; any other failed."""
        if self.status_code and exc is None and self._until_close():
            self._complete = True
            self._wake()
        elif self._received:
            self.fail(UpstreamError("the upstream closed the connection before the end"))
        else:
            self.fail(_Unanswered("the upstream closed the connection without answering"))

    def fail(self, error: UpstreamError) -> None:
        """The answer will not come whole: ``error`` is raised to its reader once what
        came is read, and its connection is closed."""
        self._error = error
        if not self._done:
            self._done = True
            self._connection.close_now()
        self._wake()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            raise UpstreamError("a second answer to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # interim (100 Continue, 103 Early Hints): the final one follows
            self._fields.clear()
            return
        self.status_code = status
        self.headers = Headers(self._fields)
        if self.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip", "deflate"):
            self._decode = zlib.decompressobj(zlib.MAX_WBITS | 32).decompress  # either header

    def on_body(self, body: bytes) -> None:
        self._parts.append(body)
        self._unread += len(body)

    def on_message_complete(self) -> None:
        if self.status_code:  # not an interim answer's end
            self._complete = True
            self._keep_alive = self._parser.should_keep_alive()

    # the rest

    def _take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self._unread = 0
        if self._paused:
            self._paused = False
            self._connection.transport.resume_reading()
        if self._decode is None:
            return data
        try:
            return self._decode(data)
        except zlib.error as exc:
            raise UpstreamError(f"an answer that does not decode: {exc}") from exc

    async def _arrival(self) -> None:
        """Wait until more of the answer, its end or its failure comes; a wait of more
        than the timeout fails it."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_later(self._connection.client.timeout, self._time_out)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _time_out(self) -> None:
        seconds = self._connection.client.timeout
        self.fail(UpstreamError(f"the upstream sent nothing for {seconds:g} s"))

    def _until_close(self) -> bool:
        """Whether the body's end is the connection's (no length, not chunked)."""
        coding = self.headers.get("transfer-encoding", "").lower()
        return "content-length" not in self.headers and "chunked" not in coding

    def _release(self) -> None:
        if self._done:
            return
        self._done = True
        if self._keep_alive:
            self._connection.client.put_back(self._connection)
        else:
            self._connection.close_now()


class _Connection(asyncio.Protocol):
    """One connection to an origin, carrying one exchange at a time."""

    def __init__(self, client: UpstreamClient, origin: Origin) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport
        self.answer: Answer | None = None  # the exchange on the wire
        self.idle_since = 0.0
        self.lost = asyncio.get_running_loop().create_future()

    async def exchange(self, request: bytes) -> Answer:
        """Send ``request``; its answer once its head has come."""
        answer = self.answer = Answer(self)
        self.transport.write(request)
        try:
            await answer.head()
        except BaseException:
            await answer.aclose()
            raise
        return answer

    def close_now(self) -> None:
        """Close at once: a call given up on, or a connection that cannot be trusted."""
        self.answer = None
        self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if self.answer is None:  # bytes no request asked for: it cannot be trusted
            self.close_now()
        else:
            self.answer.feed(data)

    def eof_received(self) -> None:
        self._gone(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone(exc)
        self.client.forget(self)
        self.lost.set_result(None)

    def _gone(self, exc: Exception | None) -> None:
        """The upstream closed: an exchange on the wire ends here, an idle connection
        leaves the pool."""
        answer, self.answer = self.answer, None
        if answer is not None:
            answer.cut_off(exc)
        self.client.drop_idle(self)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a URL's requests go, and the start of each one's head."""

    origin: Origin
    head: bytes  # the request line, Host and User-Agent

    def request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        """The whole request: its head (``headers`` after the target's) and ``body``."""
        if any("\r" in value or "\n" in value for value in headers.values()):
            raise UpstreamError("a header value with a line break")  # it would forge others
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return b"%s%sContent-Length: %d\r\n\r\n%s" % (self.head, fields.encode(), len(body), body)


@functools.lru_cache(maxsize=256)
def _target(url: str) -> _Target:
    """Where ``url`` points: ``https://openrouter.ai/api/v1/chat/completions`` goes to
    ``("https", "openrouter.ai", 443)``, each request starting ``POST
    /api/v1/chat/completions HTTP/1.1``, ``Host: openrouter.ai``, ``User-Agent:
    creditsd/0.1.0``."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UpstreamError(f"not a URL: {url}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"not an http(s) URL: {url}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
    return _Target((parts.scheme, parts.hostname, port), head.encode())


class UpstreamClient:
    """Calls upstream over kept-alive connections: at most :data:`MAX_IDLE` idle ones per
    origin, none reused after :data:`IDLE_SECONDS` idle. ``timeout`` bounds each wait for
    an upstream (``[proxy] timeout_seconds``): the connect, an answer's head, each part of
    its body. ``ssl_context`` verifies ``https`` upstreams (default: the system's
    certificates, ``http/1.1`` offered by ALPN)."""

    def __init__(self, timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}  # oldest first
        self._open: set[_Connection] = set()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body`` to ``url`` with ``headers``; the answer once its head has come.
        Any failure is :class:`UpstreamError`."""
        target = _target(url)
        request = target.request(body, headers)
        pooled = self._pooled(target.origin)
        if pooled is not None:
            try:
                return await pooled.exchange(request)
            except _Unanswered:
                # A kept-alive connection the upstream closed as this request went out, a
                # race every HTTP/1.1 client meets (RFC 9112 §9.3.1): the upstream closes
                # an idle connection when it likes, so a request crossing that close was
                # never read, and one it read but dropped without a byte of answer has
                # produced nothing the proxy could relay or bill. Sending this POST again
                # on a fresh connection cannot charge the caller twice: only the answer
                # that comes is billed.
                pass
        connection = await self._connect(target.origin)
        return await connection.exchange(request)

    async def aclose(self) -> None:
        """Close every connection, idle or in use (an answer still coming fails)."""
        connections = list(self._open)
        for connection in connections:
            if connection.answer is None:
                connection.close_now()
            else:
                connection.answer.fail(UpstreamError("the upstream client was closed"))
        if connections:
            await asyncio.wait([connection.lost for connection in connections])

    def put_back(self, connection: _Connection) -> None:
        """Pool a connection whose answer was read to its end (closed if the pool is
        full)."""
        if connection.transport.is_closing():
            return
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= MAX_IDLE:
            connection.transport.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def drop_idle(self, connection: _Connection) -> None:
        """Take a connection the upstream closed out of the pool, if it is there."""
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    def forget(self, connection: _Connection) -> None:
        """Forget a connection that is closed."""
        self._open.discard(connection)

    def _pooled(self, origin: Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin``; None when there is none,
        or it has been idle too long (and so have the others: all are closed)."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        connection = idle.pop()
        if time.monotonic() - connection.idle_since < IDLE_SECONDS:
            return connection
        for stale in (connection, *idle):
            stale.transport.close()
        idle.clear()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _transport, connection = await loop.create_connection(
                    functools.partial(_Connection, self, origin), host, port, ssl=tls
                )
        except OSError as exc:  # refused, unreachable, unknown, a bad certificate, the timeout
            raise UpstreamError(f"no connection to {host}:{port}: {exc!r}") from exc
        self._open.add(connection)
        return connection

    def _tls(self) -> ssl.SSLContext:
        """The TLS context, made on the first ``https`` connection (loading the system's
        certificates takes some 20 ms)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context
