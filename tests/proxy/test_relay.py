"""The relay's reading of an SSE stream, as providers really write it: events split across
reads, CRLF line ends, comments, usage in its own chunk or beside a choice, error events;
and the backlog a slow client takes from, bounded so the upstream waits, never memory."""

from __future__ import annotations

import asyncio
import json

from creditsd.proxy.streams import Backlog, Relay

USAGE = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


def text(content: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": content}}], "usage": None}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def test_events_split_across_reads_are_forwarded_whole_and_counted() -> None:
    relay = Relay(keep_usage=True)
    stream = text("Hello") + b": OPENROUTER PROCESSING\n\n" + text(" world") + b"data: [DONE]\n\n"
    forwarded = b""
    chars = 0
    for start in range(0, len(stream), 7):  # seven bytes a read
        out, count = relay.feed(stream[start : start + 7])
        forwarded += out
        chars += count
    assert forwarded == stream
    assert chars == len("Hello world")
    assert relay.pending == b""


def test_crlf_line_ends_are_read() -> None:
    relay = Relay(keep_usage=True)
    out, chars = relay.feed(text("Hi").replace(b"\n", b"\r\n"))
    assert (out, chars) == (text("Hi"), 2)


def test_the_usage_chunk_is_read_and_kept_only_for_a_client_that_asked() -> None:
    usage_chunk = b"data: " + json.dumps({"choices": [], "usage": USAGE}).encode() + b"\n\n"
    kept, dropped = Relay(keep_usage=True), Relay(keep_usage=False)
    assert kept.feed(usage_chunk) == (usage_chunk, 0)
    assert dropped.feed(usage_chunk) == (b"", 0)
    assert kept.usage == dropped.usage == USAGE


def test_usage_beside_a_choice_is_blanked_for_a_client_that_did_not_ask() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "!"}}], "usage": USAGE}
    relay = Relay(keep_usage=False)
    out, chars = relay.feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    assert json.loads(out.removeprefix(b"data: "))["usage"] is None
    assert (chars, relay.usage) == (1, USAGE)


def test_usage_numbers_are_read_exactly_even_in_exponent_form() -> None:
    relay = Relay(keep_usage=True)
    relay.feed(b'data: {"choices": [], "usage": {"prompt_tokens": 1e3, "cost": 0.00045}}\n\n')
    assert relay.usage is not None and str(relay.usage["prompt_tokens"]) == "1E+3"


def test_an_error_event_marks_the_stream_failed_and_reaches_the_client() -> None:
    relay = Relay(keep_usage=False)
    event = b'data: {"error": {"message": "overloaded", "code": 502}}\n\n'
    assert relay.feed(event) == (event, 0)
    assert relay.failed


def test_what_is_not_json_passes_untouched() -> None:
    relay = Relay(keep_usage=False)
    for event in (b"data: not json\n\n", b"data: [1, 2]\n\n", b"event: ping\ndata: {}\n\n"):
        assert relay.feed(event) == (event, 0)
    assert not relay.failed and relay.usage is None


def test_reasoning_refusals_and_tool_arguments_count_as_output() -> None:
    delta = {
        "reasoning": "think",
        "refusal": "no",
        "tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}],
    }
    chunk = {"choices": [{"index": 0, "delta": delta}]}
    _out, chars = Relay(keep_usage=True).feed(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    assert chars == len("think") + len("no") + len('{"a":1}')


async def test_a_full_backlog_holds_back_the_upstream_until_the_client_takes() -> None:
    backlog = Backlog(limit=10)
    await backlog.put(b"0123456789", 10)
    upstream = asyncio.ensure_future(backlog.put(b"!", 1))
    await asyncio.sleep(0.01)
    assert not upstream.done() and backlog.size == 10  # no more is kept, however much comes
    assert await backlog.take() == (b"0123456789", 10)
    await upstream
    backlog.close()  # the upstream's end: what is kept is still taken, then nothing
    assert [await backlog.take(), await backlog.take()] == [(b"!", 1), None]


async def test_a_dropped_backlog_lets_the_upstream_go_on_and_keeps_nothing() -> None:
    backlog = Backlog(limit=10)
    await backlog.put(b"0123456789", 10)
    upstream = asyncio.ensure_future(backlog.put(b"!", 1))
    await asyncio.sleep(0.01)
    backlog.drop()  # the client is gone
    await upstream
    await backlog.put(b"more", 4)
    assert (backlog.size, await backlog.take()) == (0, None)
