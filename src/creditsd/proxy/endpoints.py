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

import logging
import time
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Header, Request, Response
from starlette.background import BackgroundTask

from creditsd import jsonio
from creditsd.api.auth import LedgerDep
from creditsd.api.errors import error_responses, openai_error
from creditsd.api.http import ExactJSONResponse, bounded_body
from creditsd.inprocess import Ledger
from creditsd.pricing.catalog import TokenUse
from creditsd.proxy import service
from creditsd.proxy.payers import Paying, Reader
from creditsd.proxy.service import Call, Outcome, Route
from creditsd.proxy.streams import Relay, RelayedStream, output_chars

log = logging.getLogger("creditsd.proxy")

router = APIRouter(prefix="/openai/v1", tags=["proxy"])

_PASSED_ON = ("retry-after",)  # the upstream's headers a client may act on
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


@router.post("/chat/completions", responses=error_responses(402, 403, 404, 429, 502))
async def chat_completions(
    request: Request,
    ledger: LedgerDep,
    payer: Paying,
    x_creditsd_clamp: Annotated[bool | None, Header()] = None,
) -> Response:
    """A chat completion, streamed or not, held for before it is forwarded and billed on
    its real usage.

    An app key names the account that pays in ``X-Creditsd-Account``; a proxy key pays
    for its own account, within its spend limit (402 ``key_limit_reached``). The hold
    covers the prompt's
    estimated tokens plus ``max_completion_tokens`` (or ``max_tokens``, else ``[proxy]
    default_max_tokens``, which is then sent upstream) at the catalog's prices. With
    ``X-Creditsd-Clamp: true`` (or ``[proxy] clamp_max_tokens``) a cap the balance cannot
    cover is lowered to one it can instead of 402. The body goes upstream as sent but for
    the output cap, the upstream's name for the model and ``stream_options``, with
    OpenRouter's attribution headers; a stream's usage chunk reaches a client that asked
    for it (``stream_options.include_usage``, or OpenRouter's ``usage.include``).
    """
    started = time.perf_counter()
    payload = await _json_object(request, ledger)
    if isinstance(payload, Response):
        return payload
    model = payload.get("model")
    catalog = await ledger.catalog()
    if not isinstance(model, str) or model not in catalog.settings.models:
        return openai_error(404, "model_not_found", f"model {model!r} is not in the catalog")
    streamed = payload.get("stream") is True
    keep_usage = False
    if streamed:
        asked = payload.get("stream_options")
        asked = asked if isinstance(asked, dict) else {}
        accounting = payload.get("usage")  # OpenRouter's way of asking: {"include": true}
        keep_usage = asked.get("include_usage") is True or (
            isinstance(accounting, dict) and accounting.get("include") is True
        )
        payload["stream_options"] = {**asked, "include_usage": True}
    clamp = ledger.settings.proxy.clamp_max_tokens if x_creditsd_clamp is None else x_creditsd_clamp
    estimate, cap_field = service.chat_estimate(payload, ledger.settings.proxy.default_max_tokens)
    call = await service.open_call(ledger, payer, estimate, clamp=clamp, started=started)
    payload[cap_field] = call.cap  # the upstream never writes more than was held for
    route = service.route(ledger.settings.proxy, model)
    payload["model"] = route.model
    answer = await _send(request, ledger, call, route, "/chat/completions", payload)
    if isinstance(answer, Response):
        return answer
    if streamed:
        return RelayedStream(call, answer, Relay(keep_usage), _headers(call))
    return await _settle_answer(call, answer)


@router.post("/images/generations", responses=error_responses(402, 403, 404, 429, 502))
async def image_generations(request: Request, ledger: LedgerDep, payer: Paying) -> Response:
    """Images generated by a catalog model with a price per image, held for ``n`` images
    before the call is forwarded and billed on the images the upstream returned."""
    started = time.perf_counter()
    payload = await _json_object(request, ledger)
    if isinstance(payload, Response):
        return payload
    model = payload.get("model")
    models = (await ledger.catalog()).settings.models
    if not isinstance(model, str) or model not in models or models[model].image is None:
        message = f"model {model!r} is not priced per image in the catalog"
        return openai_error(404, "model_not_found", message)
    count = payload.setdefault("n", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_IMAGES:
        message = f"n is a whole number of images from 1 to {MAX_IMAGES}"
        return openai_error(400, "invalid_n", message)
    if payload.get("stream"):
        return openai_error(400, "unsupported", "streamed images are not supported")
    estimate = TokenUse(model, images=count)
    call = await service.open_call(ledger, payer, estimate, clamp=False, started=started)
    route = service.route(ledger.settings.proxy, model)
    payload["model"] = route.model
    answer = await _send(request, ledger, call, route, "/images/generations", payload)
    if isinstance(answer, Response):
        return answer
    body, answered = await _read(answer)
    images = answered.get("data") if isinstance(answered, dict) else None
    settling = time.perf_counter()
    await call.settle_images(Outcome.COMPLETED, len(images) if isinstance(images, list) else 0)
    call.overhead += time.perf_counter() - settling
    return Response(body, 200, headers=_headers(call), media_type="application/json")


async def _json_object(request: Request, ledger: Ledger) -> dict[str, Any] | Response:
    raw = await bounded_body(request, ledger.settings.server.max_body_bytes)
    try:
        payload = jsonio.loads(raw)
    except jsonio.JSONError as exc:
        return openai_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return openai_error(400, "invalid_request", "the body must be a JSON object")
    return payload


async def _send(
    request: Request,
    ledger: Ledger,
    call: Call,
    route: Route,
    path: str,
    payload: dict[str, Any],
) -> httpx.Response | Response:
    """The upstream's answer, its body still to read; or, when the upstream fails or
    refuses, the call settled (nothing charged) and the error to answer with."""
    http: httpx.AsyncClient = request.app.state.proxy
    sent = {name: request.headers[name] for name in _ATTRIBUTION if name in request.headers}
    outgoing = http.build_request(
        "POST",
        route.base_url + path,
        content=jsonio.render(payload),
        headers={**sent, **route.headers()},
        timeout=ledger.settings.proxy.timeout_seconds,
    )
    try:
        answer = await http.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        await call.settle(Outcome.UPSTREAM_ERROR, None)
        log.warning("upstream failed: %s", type(exc).__name__)
        return openai_error(502, "upstream_unavailable", "the model provider did not answer")
    if answer.is_success:
        return answer
    body = await answer.aread()
    await answer.aclose()
    await call.settle(Outcome.UPSTREAM_ERROR, None)
    if answer.status_code in (401, 403):  # creditsd's own key was refused: not the client's doing
        log.error("the upstream refused creditsd's key (HTTP %d)", answer.status_code)
        return openai_error(502, "upstream_refused", "the model provider refused the call")
    headers = {name: answer.headers[name] for name in _PASSED_ON if name in answer.headers}
    headers.update(_headers(call))
    return Response(body, answer.status_code, headers=headers, media_type="application/json")


async def _read(answer: httpx.Response) -> tuple[bytes, Any]:
    """A whole answer's body, and its JSON (None when it is not JSON)."""
    try:
        body = await answer.aread()
    finally:
        await answer.aclose()
    try:
        return body, jsonio.loads(body)
    except jsonio.JSONError:
        return body, None


async def _settle_answer(call: Call, answer: httpx.Response) -> Response:
    """A whole (non-streamed) answer: pass it on, then bill its usage (the hold already
    covers it, so the client need not wait for the capture)."""
    body, completion = await _read(answer)
    usage = None
    if isinstance(completion, dict):
        usage = completion.get("usage")
        call.delivered_chars = output_chars(completion.get("choices"), "message")
    return Response(
        body,
        200,
        headers=_headers(call),
        media_type="application/json",
        background=BackgroundTask(call.settle_after, Outcome.COMPLETED, usage),
    )


def _headers(call: Call) -> dict[str, str]:
    headers = {"X-Creditsd-Overhead-Ms": call.overhead_ms}
    if call.clamped:
        headers["X-Creditsd-Max-Tokens"] = str(call.cap)
    return headers
