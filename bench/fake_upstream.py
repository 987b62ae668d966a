"""A fake OpenAI-compatible upstream for ``bench_proxy.py``, fast enough not to be measured.

``POST …/chat/completions`` with ``Authorization: Bearer <--key>`` answers one fixed
``chat.completion`` with a ``usage`` object (:data:`USAGE`); with ``"stream": true`` in the
body, the same completion as server-sent events: a role chunk, a content chunk, a finish
chunk, a usage chunk with no choices (what OpenAI sends for ``stream_options.include_usage``)
and ``data: [DONE]``. ``GET /count`` answers how many completions were answered, so the
bench can check that the ledger billed each one. Any other request is 404, a wrong key 401.

Every answer is built once at start; requests are parsed by httptools on a bare asyncio
protocol, with no framework: one process answers tens of thousands a second.

    .venv/bin/python bench/fake_upstream.py --port 9100 --key sk-upstream
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools

MODEL = "openai/gpt-4o-mini"
CONTENT = "Hello!"
USAGE = {
    "prompt_tokens": 1_000,
    "completion_tokens": 500,
    "total_tokens": 1_500,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1764547200,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": CONTENT},
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _json(status: str, value: object) -> bytes:
    return _response(status, "application/json", json.dumps(value).encode())


def _stream() -> bytes:
    """The streamed completion, one HTTP chunk per event, as OpenAI sends it."""
    base = {key: COMPLETION[key] for key in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    deltas: list[tuple[dict[str, str], str | None]] = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": CONTENT}, None),
        ({}, "stop"),
    ]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        for delta, finish in deltas
    ]
    chunks.append({**base, "choices": [], "usage": USAGE})
    events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    events.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    return head + b"\r\n" + body


COMPLETED = _json("200 OK", COMPLETION)
STREAMED = _stream()
NOT_FOUND = _json("404 Not Found", {"error": {"message": "no such route", "code": "not_found"}})
UNAUTHORIZED = _json("401 Unauthorized", {"error": {"message": "bad key", "code": "bad_key"}})
BAD_REQUEST = _response("400 Bad Request", "text/plain", b"bad request")


def _closing(answer: bytes) -> bytes:
    """``answer`` saying that the connection closes after it."""
    head, body = answer.split(b"\r\n\r\n", 1)
    return head + b"\r\nConnection: close\r\n\r\n" + body


class Upstream:
    """The answers and the count of completions answered."""

    def __init__(self, key: str) -> None:
        self.authorization = f"Bearer {key}".encode()
        self.completions = 0

    def answer(self, method: bytes, url: bytes, authorization: bytes, body: bytes) -> bytes:
        """The whole HTTP answer, headers ended by the caller."""
        path = url.split(b"?", 1)[0]
        if method == b"GET" and path == b"/count":
            return _json("200 OK", {"completions": self.completions})
        if method != b"POST" or not path.endswith(b"/chat/completions"):
            return NOT_FOUND
        if authorization != self.authorization:
            return UNAUTHORIZED
        try:
            payload = json.loads(body)
        except ValueError:
            return BAD_REQUEST
        self.completions += 1
        return STREAMED if isinstance(payload, dict) and payload.get("stream") else COMPLETED


class Connection(asyncio.Protocol):
    """One client connection: requests in, precomputed answers out, kept alive."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.authorization = b""
        self.body: list[bytes] = []
        self.header = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(_closing(BAD_REQUEST))
            self.transport.close()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self.url, self.authorization, self.body = b"", b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        answer = self.upstream.answer(
            self.parser.get_method(), self.url, self.authorization, b"".join(self.body)
        )
        if self.parser.should_keep_alive():
            self.transport.write(answer)
        else:
            self.transport.write(_closing(answer))
            self.transport.close()


async def serve(host: str, port: int, key: str) -> None:
    """Answer until killed."""
    upstream = Upstream(key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), host, port, backlog=1024)
    print(f"fake upstream on http://{host}:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--key", default="sk-upstream", help="the bearer key it accepts")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.key))
