"""The proxy's upstream client on real sockets: connections kept alive and pooled, closes
the upstream makes noticed or met with one retry, every way HTTP/1.1 ends a body, bytes in
odd pieces, timeouts, TLS, and a slow reader holding back the upstream, never memory."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from creditsd.proxy import connections
from creditsd.proxy.connections import READ_AHEAD, Answer, UpstreamClient, UpstreamError

JSON = {"Content-Type": "application/json"}


@dataclass
class Exchange:
    """One request as the upstream read it, and the means to answer it."""

    connection: int  # the connection it came on, counted from 1
    number: int  # its place on that connection, counted from 1
    head: bytes
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


Respond = Callable[[Exchange], Awaitable[None]]


def whole(body: bytes, *fields: str) -> bytes:
    """An answer with a ``Content-Length``, and ``fields`` (``"Name: value"``) in its head."""
    head = "".join(f"{field}\r\n" for field in fields)
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head.encode(), len(body), body)


async def answer_number(exchange: Exchange) -> None:
    """Answer which request this is on which connection."""
    place = {"connection": exchange.connection, "number": exchange.number}
    await exchange.send(whole(json.dumps(place).encode(), "Content-Type: application/json"))


class Upstream:
    """A local HTTP/1.1 server that reads each request whole and lets ``respond`` answer
    it; it counts connections and keeps every exchange."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.connections = 0
        self.exchanges: list[Exchange] = []
        self.hung_up = asyncio.Event()  # a client closed a connection
        self.hang_ups = 0
        self.url = ""
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers[handler] = writer
        self.connections += 1
        connection, number = self.connections, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                number += 1
                exchange = Exchange(connection, number, head, body, reader, writer)
                self.exchanges.append(exchange)
                await self.respond(exchange)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hang_ups += 1
            self.hung_up.set()
        finally:
            writer.close()
            self._handlers.pop(handler)

    async def stop(self) -> None:
        """Close every connection, once its handler is done with it."""
        handlers = list(self._handlers.items())
        for _handler, writer in handlers:
            writer.close()
        await asyncio.gather(*(handler for handler, _writer in handlers))


@asynccontextmanager
async def serving(
    respond: Respond = answer_number, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Upstream]:
    upstream = Upstream(respond)
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    upstream.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/v1/chat/completions"
    try:
        yield upstream
    finally:
        server.close()
        await upstream.stop()
        await server.wait_closed()


@asynccontextmanager
async def client(
    seconds: float = 5.0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[UpstreamClient]:
    """A client waiting ``seconds`` at most for each part of an answer."""
    upstream = UpstreamClient(seconds, tls)
    try:
        yield upstream
    finally:
        await upstream.aclose()


async def read(answer: Answer) -> bytes:
    return b"".join([part async for part in answer.aiter_bytes()])


async def call(http: UpstreamClient, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    answer = await http.post(url, body, JSON)
    return answer.status_code, await read(answer)


async def test_sequential_calls_share_one_kept_alive_connection() -> None:
    async with serving() as upstream, client() as http:
        answers = [await call(http, upstream.url) for _ in range(5)]
    assert [json.loads(body)["number"] for _status, body in answers] == [1, 2, 3, 4, 5]
    assert upstream.connections == 1


async def test_the_request_is_one_post_with_its_length_and_no_compression_asked() -> None:
    async with serving() as upstream, client() as http:
        headers = {**JSON, "Authorization": "Bearer sk-1", "X-Title": "app"}
        await read(await http.post(upstream.url, b'{"model": "m"}', headers))
    (exchange,) = upstream.exchanges
    lines = exchange.head.decode().split("\r\n")
    port = upstream.url.split(":")[2].split("/")[0]
    assert lines[:3] == [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"User-Agent: {connections.USER_AGENT}",
    ]
    assert {
        "Content-Type: application/json",
        "Authorization: Bearer sk-1",
        "X-Title: app",
        "Content-Length: 14",
    } <= set(lines)
    assert "accept-encoding" not in exchange.head.decode().lower()
    assert exchange.body == b'{"model": "m"}'


async def test_an_idle_connection_the_upstream_closed_is_not_reused() -> None:
    async def answer_then_close(exchange: Exchange) -> None:
        await answer_number(exchange)
        exchange.writer.close()  # no "Connection: close": the client finds out by the close

    async with serving(answer_then_close) as upstream, client() as http:
        await call(http, upstream.url)
        await upstream.hung_up.wait()
        await asyncio.sleep(0.05)  # the close reaches the client's event loop
        _status, body = await call(http, upstream.url)
    assert json.loads(body) == {"connection": 2, "number": 1}
    assert len(upstream.exchanges) == 2  # the close was seen before reuse: nothing resent


async def test_a_request_crossing_the_upstreams_close_is_sent_again_on_a_fresh_connection() -> None:
    async def close_the_second(exchange: Exchange) -> None:
        if exchange.number == 2:  # read, then closed without a byte of answer
            exchange.writer.close()
        else:
            await answer_number(exchange)

    async with serving(close_the_second) as upstream, client() as http:
        await call(http, upstream.url)
        status, body = await call(http, upstream.url)
    assert (status, json.loads(body)) == (200, {"connection": 2, "number": 1})
    assert [(e.connection, e.number) for e in upstream.exchanges] == [(1, 1), (1, 2), (2, 1)]


async def test_a_reused_connection_that_breaks_off_mid_answer_is_not_retried() -> None:
    async def break_off_the_second(exchange: Exchange) -> None:
        if exchange.number == 2:
            await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Le")
            exchange.writer.close()
        else:
            await answer_number(exchange)

    async with serving(break_off_the_second) as upstream, client() as http:
        await call(http, upstream.url)
        with pytest.raises(UpstreamError, match="before the end"):
            await http.post(upstream.url, b"{}", JSON)
    assert len(upstream.exchanges) == 2


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried() -> None:
    async def close(exchange: Exchange) -> None:
        exchange.writer.close()

    async with serving(close) as upstream, client() as http:
        with pytest.raises(UpstreamError, match="without answering"):
            await http.post(upstream.url, b"{}", JSON)
    assert len(upstream.exchanges) == 1


BODY = b'{"choices": [{"message": {"content": "' + b"Hello! " * 2000 + b'"}}]}'


def chunked(body: bytes, sizes: tuple[int, ...] = (1, 7, 300, 4096)) -> bytes:
    """``body`` in chunks of ``sizes`` in turn, with the last (empty) chunk."""
    out, start, turn = b"", 0, 0
    while start < len(body):
        size = sizes[turn % len(sizes)]
        out += b"%x\r\n%s\r\n" % (len(body[start : start + size]), body[start : start + size])
        start, turn = start + size, turn + 1
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (whole(BODY), True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(BODY), True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY, False),  # up to the close
        (whole(BODY, "Connection: close"), False),
    ],
    ids=["content-length", "chunked", "until-close", "connection-close"],
)
async def test_every_way_a_body_ends_is_read_and_keep_alive_honoured(
    answer: bytes, kept: bool
) -> None:
    async def respond(exchange: Exchange) -> None:
        await exchange.send(answer)
        if b"Connection: close" in answer:
            exchange.writer.close()

    async with serving(respond) as upstream, client() as http:
        assert await call(http, upstream.url) == (200, BODY)
        assert await call(http, upstream.url) == (200, BODY)
    assert upstream.connections == (1 if kept else 2)


async def test_an_answer_in_odd_pieces_is_put_together() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(BODY)

    async def dribble(exchange: Exchange) -> None:
        sizes, start = (1, 2, 3, 5, 8, 13, 1021), 0
        for turn in range(len(answer)):
            if start >= len(answer):
                break
            size = sizes[turn % len(sizes)]
            await exchange.send(answer[start : start + size])
            await asyncio.sleep(0)  # each piece its own read
            start += size

    async with serving(dribble) as upstream, client() as http:
        assert await call(http, upstream.url) == (200, BODY)
        assert await call(http, upstream.url) == (200, BODY)
    assert upstream.connections == 1


async def test_an_answer_that_is_not_http_fails() -> None:
    async def garbage(exchange: Exchange) -> None:
        await exchange.send(b"SSH-2.0-OpenSSH_9.6\r\n")

    async with serving(garbage) as upstream, client() as http:
        with pytest.raises(UpstreamError, match="unreadable"):
            await http.post(upstream.url, b"{}", JSON)


@pytest.mark.parametrize("later", [False, True])
async def test_bytes_past_the_answer_spoil_the_connection_not_the_answer(later: bool) -> None:
    async def answer_twice(exchange: Exchange) -> None:
        if exchange.connection > 1:
            await answer_number(exchange)
            return
        await exchange.send(whole(BODY) + (b"" if later else whole(b"stray")))
        if later:
            await asyncio.sleep(0.05)
            await exchange.send(whole(b"stray"))

    async with serving(answer_twice) as upstream, client() as http:
        assert await call(http, upstream.url) == (200, BODY)
        await asyncio.wait_for(upstream.hung_up.wait(), 1)
        _status, body = await call(http, upstream.url)
    assert json.loads(body) == {"connection": 2, "number": 1}


async def test_header_names_are_found_whatever_their_case() -> None:
    async def odd_case(exchange: Exchange) -> None:
        fields = ("cOnTeNt-TyPe: text/event-stream", "retry-after: 7", "X-Seen: a", "x-seen: b")
        await exchange.send(whole(b"{}", *fields))

    async with serving(odd_case) as upstream, client() as http:
        answer = await http.post(upstream.url, b"{}", JSON)
        await read(answer)
    assert (
        answer.headers["Content-Type"]
        == answer.headers.get("content-type")
        == ("text/event-stream")
    )
    assert "Retry-After" in answer.headers and answer.headers["RETRY-AFTER"] == "7"
    assert answer.headers["x-seen"] == "a, b"
    assert "X-Missing" not in answer.headers and answer.headers.get("x-missing") is None


async def test_an_interim_answer_is_skipped_though_none_is_asked_for() -> None:
    # creditsd sends no "Expect: 100-continue", so no 1xx is expected; one that comes
    # anyway (100 Continue, 103 Early Hints) is passed over, as RFC 9110 lets a client do.
    async def interim_first(exchange: Exchange) -> None:
        await exchange.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await exchange.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        await exchange.send(whole(BODY))

    async with serving(interim_first) as upstream, client() as http:
        answer = await http.post(upstream.url, b"{}", JSON)
        assert (answer.status_code, await read(answer)) == (200, BODY)
        assert "link" not in answer.headers
        assert await call(http, upstream.url) == (200, BODY)
    assert upstream.connections == 1


async def test_an_answer_compressed_though_not_asked_is_decoded() -> None:
    async def compressed(exchange: Exchange) -> None:
        await exchange.send(whole(gzip.compress(BODY), "Content-Encoding: gzip"))

    async with serving(compressed) as upstream, client() as http:
        assert await call(http, upstream.url) == (200, BODY)


async def test_an_upstream_that_stalls_times_out_within_the_timeout() -> None:
    async def stall_before_and_after_the_head(exchange: Exchange) -> None:
        if exchange.connection == 2:
            await exchange.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await exchange.reader.read(1)  # nothing more, until the client hangs up

    async with serving(stall_before_and_after_the_head) as upstream, client(0.2) as http:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=r"sent nothing for 0\.2 s"):
            await http.post(upstream.url, b"{}", JSON)
        assert 0.2 <= time.monotonic() - started < 1
        await asyncio.wait_for(upstream.hung_up.wait(), 1)  # the connection was closed
        upstream.hung_up.clear()
        answer = await http.post(upstream.url, b"{}", JSON)
        started = time.monotonic()
        with pytest.raises(UpstreamError, match=r"sent nothing for 0\.2 s"):
            await read(answer)
        assert 0.2 <= time.monotonic() - started < 1
        await asyncio.wait_for(upstream.hung_up.wait(), 1)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_refused_connection_fails_at_once() -> None:
    async with client(30) as http:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="ConnectionRefused"):
            await http.post(f"http://127.0.0.1:{closed_port()}/v1", b"{}", JSON)
        assert time.monotonic() - started < 1


async def test_a_slow_reader_holds_back_the_upstream_not_memory() -> None:
    total, piece = 64 << 20, 64 << 10
    sent = 0

    async def flood(exchange: Exchange) -> None:
        nonlocal sent
        if exchange.number > 1:
            await answer_number(exchange)
            return
        await exchange.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(total // piece):
            await exchange.send(b"%x\r\n%s\r\n" % (piece, b"x" * piece))
            sent += piece
        await exchange.send(b"0\r\n\r\n")

    async with serving(flood) as upstream, client() as http:
        answer = await http.post(upstream.url, b"{}", JSON)
        parts = answer.aiter_bytes()
        received = len(await anext(parts))
        await asyncio.sleep(0.5)  # reads nothing
        assert answer._unread <= 2 * READ_AHEAD  # what it holds: a read past the bound at most
        assert sent < total // 2  # the rest waits in the upstream
        async for part in parts:
            received += len(part)
        assert received == sent == total
        _status, body = await call(http, upstream.url)
    assert json.loads(body) == {"connection": 1, "number": 2}


@pytest.mark.parametrize("read_first", [False, True])
async def test_an_answer_given_up_on_closes_its_connection(read_first: bool) -> None:
    async with serving() as upstream, client() as http:
        answer = await http.post(upstream.url, b"{}", JSON)
        if read_first:
            await asyncio.sleep(0.05)  # all of it has come, none of it read
        await answer.aclose()
        await asyncio.wait_for(upstream.hung_up.wait(), 1)
        await call(http, upstream.url)
    assert upstream.connections == 2


async def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    async with serving() as upstream, client() as http:
        with pytest.raises(UpstreamError, match="line break"):
            await http.post(upstream.url, b"{}", {"X-Title": "a\r\nX-Forged: 1"})
    assert upstream.exchanges == []


async def test_an_idle_connection_too_old_is_closed_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serving() as upstream, client() as http:
        await call(http, upstream.url)
        monkeypatch.setattr(connections, "IDLE_SECONDS", 0.0)
        await call(http, upstream.url)
        await asyncio.wait_for(upstream.hung_up.wait(), 1)
    assert upstream.connections == 2


async def test_closing_the_client_closes_its_connections_idle_or_waiting() -> None:
    async def answer_the_second(exchange: Exchange) -> None:
        if exchange.connection == 2:
            await answer_number(exchange)
        else:
            await exchange.reader.read(1)  # no answer, until the client hangs up

    async with serving(answer_the_second) as upstream:
        http = UpstreamClient(30)
        waiting = asyncio.ensure_future(http.post(upstream.url, b"{}", JSON))
        while not upstream.exchanges:  # noqa: ASYNC110  # the upstream has no event for it
            await asyncio.sleep(0.01)
        await call(http, upstream.url)  # on a second connection, then idle
        await http.aclose()
        with pytest.raises(UpstreamError, match="client was closed"):
            await asyncio.wait_for(waiting, 1)
        async with asyncio.timeout(1):
            while upstream.hang_ups < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert upstream.connections == 2


# TLS


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def serving_tls(authority: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(alpn)
    return context


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_tls_with_a_trusted_certificate_keeps_one_connection(authority: trustme.CA) -> None:
    tls = serving_tls(authority, ["http/1.1"])
    async with serving(tls=tls) as upstream, client(tls=trusting(authority)) as http:
        answers = [await call(http, upstream.url) for _ in range(3)]
    assert [json.loads(body)["number"] for _status, body in answers] == [1, 2, 3]
    assert upstream.connections == 1


async def test_the_systems_verification_is_the_default_and_offers_only_http_1_1(
    authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # what the system trusts, here
    tls = serving_tls(authority, ["h2", "http/1.1"])
    async with serving(tls=tls) as upstream, client() as http:
        await call(http, upstream.url)
    (exchange,) = upstream.exchanges
    assert exchange.writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"


async def test_a_certificate_not_trusted_is_refused(authority: trustme.CA) -> None:
    tls = serving_tls(authority, ["http/1.1"])
    async with serving(tls=tls) as upstream, client(tls=trusting(trustme.CA())) as http:
        with pytest.raises(UpstreamError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.post(upstream.url, b"{}", JSON)
    assert upstream.exchanges == []
