"""Relaying an upstream's server-sent events to the client as they come, reading only
what settling the call needs: the usage, the output characters delivered, an error event.

The upstream is always asked for its usage (``stream_options.include_usage``); a client
that did not ask for it does not get the usage chunk. The upstream is read as fast as it
writes, whatever the client's pace, and the call is settled when the upstream's stream
ends (:mod:`creditsd.proxy.service` says how); a client that hangs up, or is cut for
taking nothing, stops the upstream too under ``[proxy] on_client_disconnect =
"delivered"``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from creditsd.kit import jsonio
from creditsd.proxy.connections import Answer
from creditsd.proxy.service import Call, CallEnd

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
    ``message``): every field a model writes (text, as a string or as parts; a legacy
    ``function_call``'s and each tool call's name and arguments, or a custom tool's input;
    reasoning, under ``reasoning`` or the ``reasoning_content`` some providers use; a
    refusal; an audio answer's transcript), but not what repeats one (OpenRouter's
    ``reasoning_details``) or is not text (audio data)."""
    count = 0
    for choice in choices if isinstance(choices, list) else ():
        output = _field(choice, part)
        if isinstance(output, dict):
            count += sum(len(text) for text in _written(output) if isinstance(text, str))
    return count


def _written(output: dict[str, Any]) -> list[Any]:
    """What a model wrote in one delta or message, field by field (strings where given)."""
    content = output.get("content")
    texts = [_field(text, "text") for text in content] if isinstance(content, list) else [content]
    reasoning = output.get("reasoning")
    texts += [
        reasoning if isinstance(reasoning, str) else output.get("reasoning_content"),
        output.get("refusal"),
        _field(output.get("audio"), "transcript"),
    ]
    tools = output.get("tool_calls")
    calls = [output.get("function_call")]
    for tool in tools if isinstance(tools, list) else ():
        calls += [_field(tool, "function"), _field(tool, "custom")]  # custom: {name, input}
    texts += [_field(call, name) for call in calls for name in ("name", "arguments", "input")]
    return texts


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


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


class Backlog:
    """The events read from the upstream that the client has yet to take, in order: about
    ``limit`` bytes at most (``[proxy] max_answer_bytes``), past which the upstream waits
    for the client, so a slow client holds back the upstream, never memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: deque[tuple[bytes, int]] = deque()  # events, and their output characters
        self.closed = False  # nothing more will be kept
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, events: bytes, chars: int) -> None:
        """Keep ``events`` for the client once there is room (nothing, once closed)."""
        await self._room.wait()
        if self.closed:
            return
        self.parts.append((events, chars))
        self.size += len(events)
        self._arrived.set()
        if self.size >= self.limit:
            self._room.clear()

    async def take(self) -> tuple[bytes, int] | None:
        """The next events kept and their output characters; None once none will come."""
        while not self.parts:
            if self.closed:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        events, chars = self.parts.popleft()
        self.size -= len(events)
        if self.size < self.limit:
            self._room.set()
        return events, chars

    def close(self) -> None:
        """Keep nothing more: what is kept is still taken, then the end."""
        self.closed = True
        self._arrived.set()
        self._room.set()

    def drop(self) -> None:
        """The client is gone: throw away what is kept and whatever comes."""
        self.parts.clear()
        self.size = 0
        self.close()


class RelayedStream(Response):
    """The response relaying one upstream stream, settling its call once the upstream's
    stream ends (finished, failed, or hung up on), however far the client has read.

    The upstream is read as fast as it writes into a :class:`Backlog` the client takes from
    at its own pace, while the call keeps its hold alive (:meth:`Call.keep`). A client
    that leaves before the upstream's end, or takes nothing for ``[proxy]
    send_timeout_seconds`` and is cut, is billed by ``[proxy] on_client_disconnect``:
    ``"finish"`` reads the upstream on to its end, ``"delivered"`` hangs up on it and
    counts only what reached the client.
    """

    def __init__(self, call: Call, answer: Answer, relay: Relay, headers: dict[str, str]) -> None:
        super().__init__(media_type="text/event-stream")
        self.call = call
        self.answer = answer
        self.relay = relay
        self.settings = call.ledger.settings.proxy
        self.sent_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ]
        self.backlog = Backlog(self.settings.max_answer_bytes)
        self.read_chars = 0  # output characters the upstream wrote
        self.sent_chars = 0  # of those, the ones that reached the client
        self.broke_off = False
        self.gone = False  # the client left or was cut before the answer's end
        self.hung_up = False  # it did so while the upstream was still writing
        self.complete = False  # the whole answer went to the client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reading = asyncio.ensure_future(self._read())
        settling = asyncio.ensure_future(self._settle(reading))
        watching = asyncio.ensure_future(self._watch(receive, reading))
        try:
            await self._deliver(send, reading)
        finally:
            watching.cancel()
            self._leave(reading)  # only when this response itself failed or was cancelled
            await asyncio.shield(settling)

    async def _read(self) -> None:
        try:
            async for data in self.answer.aiter_bytes():
                await self._keep(*self.relay.feed(data))
            if self.relay.pending:  # a last event the upstream did not end with a blank line
                await self._keep(*self.relay.feed(b"\n\n"))
        except Exception as exc:  # whatever broke, the client is told
            self.broke_off = True
            log.warning("upstream stream broke off for call %s: %r", self.call.hold.id, exc)
            await self.backlog.put(self.relay.interruption(), 0)
        finally:
            self.backlog.close()

    async def _keep(self, events: bytes, chars: int) -> None:
        self.read_chars += chars
        if events:
            await self.backlog.put(events, chars)

    async def _deliver(self, send: Send, reading: asyncio.Future[None]) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.sent_headers}
        if not await self._send(send, start, reading):
            return
        while (taken := await self.backlog.take()) is not None:
            events, chars = taken
            body = {"type": "http.response.body", "body": events, "more_body": True}
            if not await self._send(send, body, reading):
                return
            self.sent_chars += chars
        end = {"type": "http.response.body", "body": b"", "more_body": False}
        self.complete = not self.gone and await self._send(send, end, reading)

    async def _send(self, send: Send, message: Message, reading: asyncio.Future[None]) -> bool:
        """Whether ``message`` went to the client within ``[proxy] send_timeout_seconds``;
        a client gone, or cut for taking nothing for that long, is left."""
        if self.gone:
            return False
        try:
            async with asyncio.timeout(self.settings.send_timeout_seconds):
                await send(message)
        except TimeoutError:
            seconds = self.settings.send_timeout_seconds
            log.warning(
                "call %s: its client took nothing for %g s: cut", self.call.hold.id, seconds
            )
        except OSError:  # servers that raise when the client has gone
            pass
        else:
            return True
        self._leave(reading)
        return False

    async def _watch(self, receive: Receive, reading: asyncio.Future[None]) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._leave(reading)

    def _leave(self, reading: asyncio.Future[None]) -> None:
        """The client is gone before the answer's end: what it has not taken is thrown
        away; while the upstream still writes, it hung up, and under "delivered" the
        upstream is hung up on."""
        if self.gone or self.complete:
            return
        self.gone = True
        self.backlog.drop()
        if not reading.done():
            self.hung_up = True
            if self.settings.on_client_disconnect == "delivered":
                reading.cancel()

    async def _settle(self, reading: asyncio.Future[None]) -> None:
        """Once the upstream's stream is over, settle on its usage, else on the output it
        wrote: all of it, but for an upstream hung up on, only what reached the client."""
        await asyncio.wait({reading})
        await self.answer.aclose()  # an upstream hung up on hears it now
        if self.broke_off or self.relay.failed:
            outcome = CallEnd.UPSTREAM_ERROR
        elif self.hung_up:
            outcome = CallEnd.CLIENT_DISCONNECTED
        else:
            outcome = CallEnd.COMPLETED
        delivered = self.sent_chars if reading.cancelled() else self.read_chars
        await self.call.settle(outcome, self.relay.usage, delivered)
