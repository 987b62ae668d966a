"""A local OpenAI-compatible upstream speaking OpenAI's wire format: chat completions
(JSON, or SSE chunks with the usage chunk when ``stream_options.include_usage`` asks),
responses (JSON, or the Responses API's named events), embeddings (floats, or base64 as
the ``openai`` SDK asks by default) and image generations. ``Upstream.behaviour`` makes it
fail the ways real providers do."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

UPSTREAM_KEY = "sk-or-upstream-secret-0123456789"
USAGE = {
    "prompt_tokens": 1_000,
    "completion_tokens": 500,
    "total_tokens": 1_500,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}
RESPONSE_USAGE = {
    "input_tokens": 1_000,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 500,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1_500,
}
EMBEDDING_USAGE = {"prompt_tokens": 1_000, "total_tokens": 1_000}
VECTOR = (0.5, -0.25, 0.125)  # exact in float32, so base64 reads back equal
Behaviour = Literal[
    "answer",  # the whole answer, then its usage
    "refuse",  # 429 in OpenAI's error shape, before any output
    "fail_midstream",  # some chunks, then an error event (response.failed) and the end
    "drop_midstream",  # some chunks, then the connection closes without a word
    "empty",  # no content at all, usage with no completion tokens
    "plain",  # a whole JSON answer even to a streamed call
    "cut",  # a whole answer whose body breaks off after its headers
]


class Dropped(Exception):
    """The connection goes down mid-stream."""


@dataclass
class Stream:
    """What one streamed answer did: its chunks sent, and whether the reader stayed."""

    sent: int = 0
    finished: bool = False
    abandoned: bool = False
    ended: threading.Event = field(default_factory=threading.Event)


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI streams it (``usage`` null until the end)."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1764547200,
        "model": model,
        "system_fingerprint": "fp_0123",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def sse(name: str | None, data: str) -> bytes:
    """One server-sent event: its ``data``, named ``name`` when not None."""
    named = b"" if name is None else f"event: {name}\n".encode()
    return named + b"data: " + data.encode() + b"\n\n"


class _Server(ThreadingHTTPServer):
    # Concurrent holds are opened in one batch, so their calls come upstream at once; the
    # default listen backlog of 5 would reset some, as no provider's server does.
    request_queue_size = 128
    daemon_threads = True


class Upstream:
    """A threaded HTTP server; ``requests`` holds each call's headers and JSON body."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.streams: list[Stream] = []
        self.peers: list[int] = []  # the port each call came from
        self.behaviour: Behaviour = "answer"
        self.pieces = ["Hel", "lo", "!", " How", " can", " I", " help?"]
        self.usage: dict[str, Any] | None = dict(USAGE)
        self.response_usage: dict[str, Any] | None = dict(RESPONSE_USAGE)
        self.embedding_usage: dict[str, Any] | None = dict(EMBEDDING_USAGE)
        self.pause = 0.0  # seconds between streamed chunks
        self.delay = 0.0  # seconds before answering at all
        self.refusal = 429  # the status "refuse" answers with
        self.images_returned: int | None = None  # fewer images than asked, if set
        self.extra: dict[
            str, Any
        ] = {}  # more fields in every message, delta, output item and image
        self.output: dict[str, Any] | None = None  # the answer's fields, in place of its text
        self.stall_after: int | None = None  # streamed pieces sent before waiting on resume
        self.resume = threading.Event()
        self.gate = threading.Event()  # a test closes it to keep calls waiting here
        self.gate.set()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and streams in chunks as providers do

            def do_POST(self) -> None:
                sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append((dict(self.headers.items()), sent))
                upstream.peers.append(self.client_address[1])
                upstream.gate.wait(timeout=30)
                time.sleep(upstream.delay)
                if upstream.behaviour == "refuse":
                    status = upstream.refusal
                    error = {"message": "Refused", "type": "upstream_error", "code": status}
                    self.answer(status, {"error": error}, {"Retry-After": "7"})
                elif self.path.endswith("/images/generations"):
                    self.answer(200, upstream.images(sent))
                elif self.path.endswith("/embeddings"):
                    self.answer(200, upstream.embeddings(sent))
                elif upstream.behaviour == "cut":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "5000")
                    self.end_headers()
                    self.wfile.write(b'{"id": "chatcmpl-1", "choi')
                    self.close_connection = True
                elif self.path.endswith("/responses"):
                    if sent.get("stream") and upstream.behaviour != "plain":
                        self.stream(upstream.response_events(sent))
                    else:
                        self.answer(200, upstream.response(sent))
                elif sent.get("stream") and upstream.behaviour != "plain":
                    self.stream(sse(None, data) for data in upstream.events(sent))
                else:
                    self.answer(200, upstream.completion(sent))

            def answer(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def stream(self, events: Iterator[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                record = Stream()
                upstream.streams.append(record)
                try:
                    for event in events:
                        self.write_chunk(event)
                        record.sent += 1
                        time.sleep(upstream.pause)
                    self.write_chunk(b"")
                    record.finished = True
                except (BrokenPipeError, ConnectionResetError):  # the proxy hung up on us
                    record.abandoned = True
                except Dropped:  # the stream ends without its last chunk
                    self.close_connection = True
                finally:
                    record.ended.set()

            def write_chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def completion(self, sent: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed ``chat.completion``."""
        empty = self.behaviour == "empty"
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1764547200,
            "model": sent["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", **self._output(empty), **self.extra},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(),
        }

    def events(self, sent: dict[str, Any]) -> Iterator[str]:
        """The SSE ``data`` payloads of a streamed answer, ``[DONE]`` last."""
        model = sent["model"]
        yield json.dumps(chunk(model, {"role": "assistant", "content": ""}))
        if self.output is not None:
            yield json.dumps(chunk(model, self.output))
        pieces = [] if self.behaviour == "empty" or self.output is not None else self.pieces
        for number, piece in enumerate(pieces):
            if number == self.stall_after:
                self.resume.wait(timeout=60)
            if number == 3 and self.behaviour == "fail_midstream":
                error = {"message": "Provider returned error", "code": 502}
                yield json.dumps({"error": error, "choices": []})
                return
            if number == 3 and self.behaviour == "drop_midstream":
                raise Dropped
            yield json.dumps(chunk(model, {"content": piece, **self.extra}))
        yield json.dumps(chunk(model, {}, finish="stop"))
        if (sent.get("stream_options") or {}).get("include_usage"):
            yield json.dumps({**chunk(model, {}), "choices": [], "usage": self._usage()})
        yield "[DONE]"

    def response(self, sent: dict[str, Any], status: str = "completed") -> dict[str, Any]:
        """A ``response`` object as the Responses API writes it, in ``status``: once
        completed, with the pieces' text (none when empty) and its usage."""
        text = "" if self.behaviour == "empty" else "".join(self.pieces)
        completed = status == "completed"
        return {
            "id": "resp_0123",
            "object": "response",
            "created_at": 1764547200,
            "status": status,
            "background": False,
            "completed_at": 1764547201 if status == "completed" else None,
            "error": {"code": "server_error", "message": "Provider returned error"}
            if status == "failed"
            else None,
            "incomplete_details": None,
            "instructions": sent.get("instructions"),
            "max_output_tokens": sent.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": sent["model"],
            "output": [self._message(text, "completed")] if completed and text else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "prompt_cache_key": None,
            "prompt_cache_retention": None,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None,
            "service_tier": "default",
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": self._response_usage() if completed else None,
            "user": None,
            "metadata": {},
        }

    def response_events(self, sent: dict[str, Any]) -> Iterator[bytes]:
        """A streamed response's events, named by their ``type``, numbered in sequence."""
        numbers = iter(range(1_000))

        def event(kind: str, **fields: Any) -> bytes:
            return sse(kind, json.dumps({"type": kind, **fields, "sequence_number": next(numbers)}))

        yield event("response.created", response=self.response(sent, "in_progress"))
        yield event("response.in_progress", response=self.response(sent, "in_progress"))
        pieces = [] if self.behaviour == "empty" else self.pieces
        place = {"item_id": "msg_0123", "output_index": 0, "content_index": 0}
        if pieces:
            item = self._message("", "in_progress", parts=False)
            yield event("response.output_item.added", output_index=0, item=item)
            yield event("response.content_part.added", **place, part=self._text(""))
        for number, piece in enumerate(pieces):
            if number == 3 and self.behaviour == "fail_midstream":
                yield event("response.failed", response=self.response(sent, "failed"))
                return
            if number == 3 and self.behaviour == "drop_midstream":
                raise Dropped
            yield event(
                "response.output_text.delta", **place, delta=piece, logprobs=[], obfuscation="Zq"
            )
        if pieces:
            text = "".join(pieces)
            yield event("response.output_text.done", **place, text=text, logprobs=[])
            yield event("response.content_part.done", **place, part=self._text(text))
            item = self._message(text, "completed")
            yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=self.response(sent))

    def _message(self, text: str, status: str, parts: bool = True) -> dict[str, Any]:
        content = [self._text(text)] if parts else []
        return {
            "id": "msg_0123",
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
            **self.extra,
        }

    @staticmethod
    def _text(text: str) -> dict[str, Any]:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def _response_usage(self) -> dict[str, Any] | None:
        if self.behaviour == "empty" and self.response_usage is not None:
            return {**self.response_usage, "output_tokens": 0, "total_tokens": 1_000}
        return self.response_usage

    def embeddings(self, sent: dict[str, Any]) -> dict[str, Any]:
        """An ``embeddings`` answer: a vector for each input, as floats or base64."""
        given = sent["input"]
        inputs = given if isinstance(given, list) and isinstance(given[0], str | list) else [given]
        vector: Any = list(VECTOR)
        if sent.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack("<3f", *VECTOR)).decode()
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": vector}
                for index in range(len(inputs))
            ],
            "model": sent["model"],
            "usage": self.embedding_usage,
        }

    def images(self, sent: dict[str, Any]) -> dict[str, Any]:
        """An ``images.generations`` answer with ``n`` images."""
        count = self.images_returned or int(sent.get("n") or 1)
        return {"created": 1764547200, "data": [{"b64_json": "aGVsbG8=", **self.extra}] * count}

    def _output(self, empty: bool) -> dict[str, Any]:
        if self.output is not None:
            return self.output
        return {"content": "" if empty else "Hello!"}

    def _usage(self) -> dict[str, Any] | None:
        if self.behaviour == "empty":
            return {**(self.usage or {}), "completion_tokens": 0, "total_tokens": 1_000}
        return self.usage

    def close(self) -> None:
        """Stop serving."""
        self.gate.set()
        self.resume.set()
        self._server.shutdown()
        self._server.server_close()
