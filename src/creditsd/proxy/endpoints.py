"""``/openai/v1``: OpenAI's API in front of an OpenAI-compatible upstream (OpenRouter by
default), for the catalog's priced models.

A call is held for its estimate before anything is sent upstream, so a call the balance
cannot cover is refused (402) without an upstream byte; what the upstream reports is then
captured, priced by the catalog, and the rest of the hold released in the same write
(:mod:`creditsd.proxy.service` has the rules). Every answer says what creditsd itself took
in ``X-Creditsd-Overhead-Ms``; a call whose output cap was lowered to what the balance
covers says so in ``X-Creditsd-Max-Tokens``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from starlette.types import Receive, Scope, Send

from creditsd.api.auth import LedgerDep
from creditsd.api.errors import error_responses, openai_error
from creditsd.api.http import ExactJSONResponse, InvalidJSON, bounded_body
from creditsd.api.observe import STARTED_SCOPE
from creditsd.inprocess import Ledger
from creditsd.kit import jsonio
from creditsd.kit.errors import CreditsError
from creditsd.pricing.catalog import TokenUse
from creditsd.pricing.providers import OpenAIEmbeddingsUsage, OpenAIResponsesUsage
from creditsd.proxy import embeddings, responses, service
from creditsd.proxy.connections import Answer, UpstreamClient, UpstreamError
from creditsd.proxy.payers import Paying, Reader
from creditsd.proxy.service import Call, CallEnd
from creditsd.proxy.streams import Relay, RelayedStream

log = logging.getLogger("creditsd.proxy")

router = APIRouter(prefix="/openai/v1", tags=["proxy"])

_PASSED_ON = ("retry-after",)  # the upstream's headers a client may act on
_OURS = (401, 402, 403)  # the upstream refusing creditsd's key or account, not the client
SSE = "text/event-stream"
MAX_IMAGES = 10  # OpenAI's own limit on n
# The client's headers passed upstream: OpenRouter's app attribution, which its SDKs send.
_ATTRIBUTION = ("HTTP-Referer", "X-Title", "X-OpenRouter-Title", "X-OpenRouter-Categories")


@router.get("/models", responses=error_responses(429))
async def list_models(ledger: LedgerDep, _key: Reader) -> ExactJSONResponse:
    """The catalog's priced models, in OpenAI's list shape."""
    catalog = await ledger.catalog()
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": name.split("/")[0]}
        for name in sorted(catalog.settings.models)
    ]
    return ExactJSONResponse({"object": "list", "data": data})


@router.post("/chat/completions", responses=error_responses(402, 403, 404, 429, 502, 503))
async def chat_completions(
    request: Request,
    ledger: LedgerDep,
    payer: Paying,
    x_creditsd_clamp: Annotated[bool | None, Header()] = None,
) -> Response:
    """A chat completion, streamed or not, held for before it is forwarded and billed on
    its real usage.

    An app key names the account that pays in ``X-Creditsd-Account``; a proxy key pays
    for its own account, within its spend limit (402 ``key_limit_reached``).
    ``X-Creditsd-Member`` (or a key minted for a member) makes the call a member's of
    that wallet, within the member's spend limits (402 ``limit_reached``). The hold
    covers the input's estimated tokens (the body's size over four: messages, tools and
    every other field a model reads) plus ``max_completion_tokens`` (or ``max_tokens``,
    else ``[proxy] default_max_tokens``, which is then sent upstream) at the catalog's
    prices. With ``X-Creditsd-Clamp: true`` (or ``[proxy] clamp_max_tokens``) a cap the
    balance cannot cover is lowered to one it can instead of 402. The body goes upstream
    as sent but for the output cap, the upstream's name for the model and
    ``stream_options``, with OpenRouter's attribution headers; a stream's usage chunk
    reaches a client that asked for it (``stream_options.include_usage``, or OpenRouter's
    ``usage.include``).
    """
    started, body, payload = await _arrived(request, ledger)
    service.priced_model(await ledger.catalog(), payload)
    asked = service.chat_call(payload, body, ledger.settings.proxy.default_max_tokens)
    call = await service.open_call(
        ledger,
        payer,
        asked.estimate,
        clamp=x_creditsd_clamp,
        started=started,
        choices=asked.choices,
    )
    service.limit_output(payload, call.cap)
    answered = _answering(call, Relay(asked.usage_asked), streamed=asked.streamed)
    return await _forward(request, call, "/chat/completions", payload, answered)


@router.post("/responses", responses=error_responses(402, 403, 404, 429, 502, 503))
async def create_response(
    request: Request,
    ledger: LedgerDep,
    payer: Paying,
    x_creditsd_clamp: Annotated[bool | None, Header()] = None,
) -> Response:
    """A model response (OpenAI's Responses API), streamed or not, held for and billed as
    a chat completion is: the same payers, hold, clamping and settlement. The output cap
    is ``max_output_tokens`` (else ``[proxy] default_max_tokens``, then sent upstream); the
    usage is the response's own, and a stream's events reach the client as the upstream
    wrote them. A background response is 400: its usage would come only with a later
    fetch, which the proxy does not serve. A proxy key's calls are not stored upstream and
    may not name stored ones (400).
    """
    started, body, payload = await _arrived(request, ledger)
    service.priced_model(await ledger.catalog(), payload)
    asked = responses.responses_call(payload, body, ledger.settings.proxy.default_max_tokens)
    if payer.proxy_key_id is not None:
        responses.for_end_user(payload)
    call = await service.open_call(
        ledger,
        payer,
        asked.estimate,
        clamp=x_creditsd_clamp,
        started=started,
        usage_format=OpenAIResponsesUsage,
    )
    payload[responses.CAP_FIELD] = call.cap
    answered = _answering(call, responses.ResponsesRelay(), streamed=asked.streamed)
    return await _forward(request, call, "/responses", payload, answered)


@router.post("/embeddings", responses=error_responses(402, 403, 404, 429, 502, 503))
async def create_embeddings(request: Request, ledger: LedgerDep, payer: Paying) -> Response:
    """Embeddings by a catalog model, held for the input's estimated tokens at its input
    price and billed on the input tokens the upstream counted (on the estimate when it
    reports none); a call that returns no embedding costs nothing."""
    started, _body, payload = await _arrived(request, ledger)
    service.priced_model(await ledger.catalog(), payload)
    estimate = embeddings.embeddings_call(payload)
    call = await service.open_call(
        ledger,
        payer,
        estimate,
        clamp=False,
        started=started,
        usage_format=OpenAIEmbeddingsUsage,
    )

    async def answered(answer: Answer) -> Response:
        body, result = await _read(answer, ledger.settings.proxy.max_answer_bytes)
        result = result if isinstance(result, dict) else {}
        data = result.get("data")
        count = len(data) if isinstance(data, list) else 0
        usage = result.get("usage")
        return Answered(
            _whole(body, call), lambda: call.settle_embeddings(CallEnd.COMPLETED, usage, count)
        )

    return await _forward(request, call, "/embeddings", payload, answered)


@router.post("/images/generations", responses=error_responses(402, 403, 404, 429, 502, 503))
async def image_generations(request: Request, ledger: LedgerDep, payer: Paying) -> Response:
    """Images generated by a catalog model with a price per image, held for ``n`` images
    before the call is forwarded and billed on the images the upstream returned."""
    started, _body, payload = await _arrived(request, ledger)
    model = payload.get("model")
    models = (await ledger.catalog()).settings.models
    if not isinstance(model, str) or model not in models or models[model].image is None:
        message = f"model {model!r} is not priced per image in the catalog"
        return openai_error(404, "model_not_found", message)
    payload["n"] = count = service.whole_number(payload, "n", MAX_IMAGES) or 1
    if payload.get("stream"):
        return openai_error(400, "unsupported", "streamed images are not supported")
    estimate = TokenUse(model, images=count)
    call = await service.open_call(ledger, payer, estimate, clamp=False, started=started)

    async def answered(answer: Answer) -> Response:
        body, generated = await _read(answer, ledger.settings.proxy.max_answer_bytes)
        images = generated.get("data") if isinstance(generated, dict) else None
        count = len(images) if isinstance(images, list) else 0
        return Answered(_whole(body, call), lambda: call.settle_images(CallEnd.COMPLETED, count))

    return await _forward(request, call, "/images/generations", payload, answered)


def _answering(
    call: Call, relay: Relay, *, streamed: bool
) -> Callable[[Answer], Awaitable[Response]]:
    """How a model call's answer is passed on: a stream relayed event by event; a whole
    answer (even to a streamed call) read whole. Either settles the call once sent."""

    async def answered(answer: Answer) -> Response:
        if streamed and answer.headers.get("content-type", "").startswith(SSE):
            return RelayedStream(call, answer, relay, _headers(call))
        body, whole = await _read(answer, call.ledger.settings.proxy.max_answer_bytes)
        whole = whole if isinstance(whole, dict) else {}
        usage, delivered = whole.get("usage"), relay.answer_chars(whole)
        return Answered(
            _whole(body, call), lambda: call.settle(CallEnd.COMPLETED, usage, delivered)
        )

    return answered


class NotAnObject(CreditsError):
    """A call whose body is JSON but not an object."""

    code = "invalid_request"
    status = 400

    def __init__(self) -> None:
        super().__init__("the body must be a JSON object")


async def _arrived(request: Request, ledger: Ledger) -> tuple[float, bytes, dict[str, Any]]:
    """When the call arrived, its body as it arrived, and its JSON object (400 for a body
    that is not one); 503 before anything is held when its upstream lacks a key."""
    started = request.scope.get(STARTED_SCOPE) or time.perf_counter()
    raw = await bounded_body(request, ledger.settings.server.max_body_bytes)
    try:
        payload = jsonio.loads(raw)
    except jsonio.JSONError as exc:
        raise InvalidJSON(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise NotAnObject
    model = payload.get("model")
    service.route(ledger.settings.proxy, model if isinstance(model, str) else "")
    return started, raw, payload


async def _forward(
    request: Request,
    call: Call,
    path: str,
    payload: dict[str, Any],
    answered: Callable[[Answer], Awaitable[Response]],
) -> Response:
    """Send the held call upstream (its model's route, under the upstream's name for it)
    and pass its answer on (``answered`` makes the response, which settles the call once
    it is sent). A call that gets no answer, a refusal, or one that breaks off is settled
    here: it costs nothing."""
    ledger = call.ledger
    route = service.route(ledger.settings.proxy, call.model)
    payload["model"] = route.model
    upstream: UpstreamClient = request.app.state.proxy
    sent = {
        name: request.headers[name]
        for name in _ATTRIBUTION
        if name in request.headers and request.headers[name].isascii()
    }
    content = jsonio.render(payload)
    headers = {**sent, **route.headers()}
    call.keep()
    try:
        answer = await upstream.post(route.base_url + path, content, headers)
        if answer.is_success:
            return await answered(answer)
        body, _ = await _read(answer, ledger.settings.proxy.max_answer_bytes)
    except UpstreamError as exc:
        log.warning("upstream failed: %s", exc)
        failed = openai_error(502, "upstream_unavailable", "the model provider did not answer")
        return Answered(failed, lambda: call.settle(CallEnd.UPSTREAM_ERROR, None))
    except AnswerTooLarge:
        log.warning("an upstream answer passed [proxy] max_answer_bytes; not passed on")
        message = "the model provider's answer is larger than this proxy passes on"
        failed = openai_error(502, "upstream_answer_too_large", message)
        return Answered(failed, lambda: call.settle(CallEnd.UPSTREAM_ERROR, None))
    except BaseException:
        await asyncio.shield(call.settle(CallEnd.UPSTREAM_ERROR, None))
        raise
    if answer.status_code in _OURS:  # creditsd's own key or account: not the client's doing
        log.error("the upstream refused creditsd's call (HTTP %d)", answer.status_code)
        refused = openai_error(502, "upstream_refused", "the model provider refused the call")
        return Answered(refused, lambda: call.settle(CallEnd.UPSTREAM_ERROR, None))
    headers = {name: answer.headers[name] for name in _PASSED_ON if name in answer.headers}
    headers.update(_headers(call))
    passed = Response(body, answer.status_code, headers=headers, media_type="application/json")
    return Answered(passed, lambda: call.settle(CallEnd.UPSTREAM_ERROR, None))


class Answered(Response):
    """An answer, passed on first; its call is settled once it has gone (the hold already
    covers it), or once sending it failed: either way, exactly once, and no client waits
    for the ledger."""

    def __init__(self, answer: Response, settle: Callable[[], Awaitable[None]]) -> None:
        super().__init__(answer.body, answer.status_code)
        self.raw_headers = answer.raw_headers
        self.settle = settle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.shield(self.settle())


class AnswerTooLarge(Exception):
    """An upstream answer longer than ``[proxy] max_answer_bytes``."""


async def _read(answer: Answer, limit: int) -> tuple[bytes, Any]:
    """A whole answer's body, at most ``limit`` bytes (else :class:`AnswerTooLarge`), and
    its JSON (None when it is not JSON)."""
    parts: list[bytes] = []
    size = 0
    try:
        async for part in answer.aiter_bytes():
            size += len(part)
            if size > limit:
                raise AnswerTooLarge
            parts.append(part)
    finally:
        await answer.aclose()
    body = b"".join(parts)
    try:
        return body, jsonio.loads(body)
    except jsonio.JSONError:
        return body, None


def _whole(body: bytes, call: Call) -> Response:
    """A whole answer of the upstream's, as the client gets it."""
    return Response(body, 200, headers=_headers(call), media_type="application/json")


def _headers(call: Call) -> dict[str, str]:
    headers = {"X-Creditsd-Overhead-Ms": call.overhead_ms}
    if call.clamped:
        headers["X-Creditsd-Max-Tokens"] = str(call.cap)
    return headers
