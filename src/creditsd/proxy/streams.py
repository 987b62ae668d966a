"""Relaying an upstream's server-sent events to the client as they come, reading only
what settling the call needs: the usage, the output characters delivered, an error event.

The upstream is always asked for its usage (``stream_options.include_usage``); a client
that did not ask for it does not get the usage chunk. The call is settled however the
stream ends (:mod:`creditsd.proxy.service` says how), and a client that hangs up stops the
upstream too under ``[proxy] on_client_disconnect = "delivered"``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from creditsd import jsonio
from creditsd.proxy.service import Call, Outcome

log = logging.getLogger("creditsd.proxy")

_DONE = b"[DONE]"
_LOST = jsonio.render(
    {
        "error": {
            "message": "the model provider's stream broke off",
            "type": "api_error",
            "param": None,
            "code": "upstream_interrupted",
        }
    }
)


def output_chars(choices: Any, part: str = "delta") -> int:
    """The output characters in choices' ``part`` (a chunk's ``delta``, an answer's
    ``message``): text, reasoning, refusals and tool arguments."""
    count = 0
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get(part) if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for name in ("content", "reasoning", "refusal"):
            text = delta.get(name)
            if isinstance(text, str):
                count += len(text)
        tools = delta.get("tool_calls")
        for tool in tools if isinstance(tools, list) else ():
            function = tool.get("function") if isinstance(tool, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                count += len(arguments)
    return count


class Relay:
    """Splits an SSE byte stream into its events and reads each ``data`` payload once: a
    chat completion's chunks here, another API's events in a subclass (``_chunk``)."""

    def __init__(self, keep_usage: bool) -> None:
        self.keep_usage = keep_usage
        self.usage: Any = None
        self.failed = False  # the upstream sent an error event
        self.pending = b""  # the start of an event still arriving

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """The complete events ``data`` finishes, as the client gets them, and the output
        characters they carry."""
        data = self.pending + data
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self.pending = data
            return b"", 0
        self.pending = data[end + 2 :]
        forwarded = []
        chars = 0
        for event in data[:end].split(b"\n\n"):
            kept, count = self._read(event)
            if kept is not None:
                forwarded.append(kept)
                chars += count
        return b"".join(forwarded), chars

    def _read(self, event: bytes) -> tuple[bytes | None, int]:
        if event.startswith(b"data: ") and b"\n" not in event:
            payload = event[6:]
        else:  # several lines, comments (": keep-alive"), event names
            lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line[:5] == b"data:"]
            payload = b"\n".join(lines)
        if not payload or payload == _DONE:
            return event + b"\n\n", 0
        try:
            chunk = orjson.loads(payload)  # the fastest reader: only strings are read here
        except orjson.JSONDecodeError:
            return event + b"\n\n", 0
        if not isinstance(chunk, dict):
            return event + b"\n\n", 0
        return self._chunk(event, payload, chunk)

    def _chunk(
        self, event: bytes, payload: bytes, chunk: dict[str, Any]
    ) -> tuple[bytes | None, int]:
        """The event as the client gets it (None: not at all) and the output characters it
        carries, from its JSON ``payload`` read as ``chunk``."""
        if chunk.get("error"):
            self.failed = True
        choices = chunk.get("choices")
        if chunk.get("usage"):
            self.usage = exactly(payload, chunk)["usage"]
            if not self.keep_usage:
                if not choices:
                    return None, 0
                event = b"data: " + jsonio.render({**chunk, "usage": None})
        return event + b"\n\n", output_chars(choices)

    def answer_chars(self, answer: dict[str, Any]) -> int:
        """The output characters of a whole answer (not streamed)."""
        return output_chars(answer.get("choices"), "message")

    def interruption(self) -> bytes:
        """The event that tells the client the upstream's stream broke off."""
        return b"data: " + _LOST + b"\n\n"


def exactly(payload: bytes, chunk: dict[str, Any]) -> Any:
    """An event's JSON with its numbers read exactly (``chunk``, orjson's reading, when
    ``payload`` is not strict JSON: a duplicate key, say)."""
    try:
        return jsonio.loads(payload)
    except jsonio.JSONError:
        return chunk


class RelayedStream(Response):
    """The response relaying one upstream stream; it settles the call however the stream
    ends: finished, failed, or left by its client."""

    def __init__(
        self, call: Call, answer: httpx.Response, relay: Relay, headers: dict[str, str]
    ) -> None:
        super().__init__(media_type="text/event-stream")
        self.call = call
        self.answer = answer
        self.relay = relay
        self.sent_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]
        self.hung_up = asyncio.Event()  # the client left before the stream's end
        self.broke_off = False
        self.finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(self._watch(receive, pump))
        try:
            await asyncio.wait({pump})
            if not pump.cancelled():
                pump.result()
        finally:
            watch.cancel()
            pump.cancel()  # only when this response itself was cancelled
            await asyncio.shield(self._settle())

    async def _pump(self, send: Send) -> None:
        await self._send(
            send, {"type": "http.response.start", "status": 200, "headers": self.sent_headers}
        )
        try:
            async for data in self.answer.aiter_bytes():
                await self._forward(send, *self.relay.feed(data))
                await self.call.keep_alive()
            if self.relay.pending:  # a last event the upstream did not end with a blank line
                await self._forward(send, *self.relay.feed(b"\n\n"))
        except Exception as exc:  # whatever broke, the client is told
            self.broke_off = True
            log.warning("upstream stream broke off for call %s: %r", self.call.hold.id, exc)
            await self._send(
                send,
                {
                    "type": "http.response.body",
                    "body": self.relay.interruption(),
                    "more_body": True,
                },
            )
        finally:
            await self.answer.aclose()  # a cancelled pump hangs up on the upstream too
        self.finished = True
        await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})

    async def _forward(self, send: Send, events: bytes, chars: int) -> None:
        if events and await self._send(
            send, {"type": "http.response.body", "body": events, "more_body": True}
        ):
            self.call.delivered_chars += chars

    async def _send(self, send: Send, message: Message) -> bool:
        """Whether ``message`` went to the client (not once it has gone)."""
        if self.hung_up.is_set():
            return False
        try:
            await send(message)
        except OSError:  # servers that raise when the client has gone
            self.hung_up.set()
            return False
        return True

    async def _watch(self, receive: Receive, pump: asyncio.Future[None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if self.finished:  # the disconnect that follows a whole answer
            return
        self.hung_up.set()
        if self.call.ledger.settings.proxy.on_client_disconnect == "delivered":
            pump.cancel()

    async def _settle(self) -> None:
        if self.broke_off or self.relay.failed:
            outcome = Outcome.UPSTREAM_ERROR
        elif self.hung_up.is_set():
            outcome = Outcome.CLIENT_DISCONNECTED
        else:
            outcome = Outcome.COMPLETED
        await self.call.quietly(self.call.settle(outcome, self.relay.usage))
