"""A local stand-in for a model provider, speaking OpenAI's wire format with no key, so
the proxy can be tried (and developed against) offline: ``creditsd dev-upstream``.

- ``GET /v1/models``: the one model it answers for any name asked, in OpenAI's list shape.
- ``POST /v1/chat/completions``: ``You said: <the last user message>``, whole or streamed
  (server-sent ``chat.completion.chunk`` events, one per word, then a chunk with no choices
  carrying ``usage`` when ``stream_options.include_usage`` asks, then ``data: [DONE]``).
- ``POST /v1/responses``: the same reply as a Responses API ``response``, whole or
  streamed (named events, ``usage`` in the last, ``response.completed``).

Token counts are deterministic: a text's characters over four, rounded up (at least 1),
so ``{"role": "user", "content": "Hi"}`` is 1 prompt token and ``You said: Hi`` 3
completion tokens.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CREATED = 1764547200  # a fixed time, so that every answer is the same for the same call
MODEL = "dev-upstream"


def tokens(text: str) -> int:
    """``text``'s tokens by the rule of thumb: its characters over four, at least one."""
    return max(1, math.ceil(len(text) / 4))


def _text(content: Any) -> str:
    """A message's or input's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def reply(messages: list[Any]) -> tuple[str, str]:
    """What was asked (every message's text, for the prompt's count) and the answer to it."""
    said = [message for message in messages if isinstance(message, dict)]
    asked = "\n".join(_text(message.get("content")) for message in said)
    users = [_text(message.get("content")) for message in said if message.get("role") == "user"]
    return asked, f"You said: {users[-1] if users else ''}"


def chat_usage(asked: str, answer: str) -> dict[str, Any]:
    """Chat Completions' ``usage`` for ``asked`` answered by ``answer``."""
    prompt, completion = tokens(asked), tokens(answer)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def _body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the 400 answering it."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _error(400, "the body must be a JSON object")
    return payload


def _error(status: int, message: str) -> JSONResponse:
    """An error in OpenAI's shape."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return JSONResponse({"error": error}, status)


async def models(request: Request) -> Response:
    """``GET /v1/models``."""
    model = {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "creditsd"}
    return JSONResponse({"object": "list", "data": [model]})


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``, whole or streamed."""
    payload = await _body(request)
    if isinstance(payload, Response):
        return payload
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return _error(400, "messages must be a list")
    asked, answer = reply(messages)
    usage = chat_usage(asked, answer)
    head = {"id": "chatcmpl-dev", "created": CREATED, "model": str(payload.get("model", MODEL))}
    if payload.get("stream") is True:
        options = payload.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = _chunks(head, answer, usage if with_usage else None)
        return StreamingResponse(events, media_type="text/event-stream")
    message = {"role": "assistant", "content": answer}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


def _chunks(head: dict[str, Any], answer: str, usage: dict[str, Any] | None) -> Iterator[str]:
    """A streamed completion's events: the role, a word a chunk, the finish, the usage."""
    head = {**head, "object": "chat.completion.chunk"}
    words = answer.split(" ")
    deltas: list[tuple[dict[str, str], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": word if i == 0 else f" {word}"}, None) for i, word in enumerate(words)]
    deltas.append(({}, "stop"))
    for delta, finish in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        yield f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
    if usage is not None:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


async def responses(request: Request) -> Response:
    """``POST /v1/responses``, whole or streamed (the Responses API's named events)."""
    payload = await _body(request)
    if isinstance(payload, Response):
        return payload
    given = payload.get("input")
    messages = [{"role": "user", "content": given}] if isinstance(given, str) else given
    asked, answer = reply(messages if isinstance(messages, list) else [])
    counted = chat_usage(asked, answer)
    usage = {
        "input_tokens": counted["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": counted["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counted["total_tokens"],
    }
    model = str(payload.get("model", MODEL))
    if payload.get("stream") is True:
        return StreamingResponse(_events(model, answer, usage), media_type="text/event-stream")
    return JSONResponse(_response(model, [_message(answer, "completed")], usage))


def _response(model: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    """A Responses API ``response``: completed with its ``usage``, else in progress."""
    return {
        "id": "resp_dev",
        "object": "response",
        "created_at": CREATED,
        "status": "completed" if usage is not None else "in_progress",
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _message(text: str, status: str) -> dict[str, Any]:
    """The answer's output item."""
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "type": "message",
        "id": "msg_dev",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _events(model: str, answer: str, usage: dict[str, Any]) -> Iterator[str]:
    """A streamed response's events, a word a delta, ending with ``response.completed``."""
    place = {"item_id": "msg_dev", "output_index": 0, "content_index": 0}
    empty = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(model, [], None)},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**_message("", "in_progress"), "content": []},
        },
        {"type": "response.content_part.added", **place, "part": empty},
    ]
    words = answer.split(" ")
    events += [
        {"type": "response.output_text.delta", **place, "delta": word if i == 0 else f" {word}"}
        for i, word in enumerate(words)
    ]
    done = _message(answer, "completed")
    events += [
        {"type": "response.output_text.done", **place, "text": answer},
        {"type": "response.content_part.done", **place, "part": done["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed", "response": _response(model, [done], usage)},
    ]
    for number, event in enumerate(events):
        data = json.dumps({**event, "sequence_number": number})
        yield f"event: {event['type']}\ndata: {data}\n\n"


def create_app() -> Starlette:
    """The stand-in's ASGI app."""
    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
        ]
    )
