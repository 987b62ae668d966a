"""``/openai/v1``: OpenAI's API in front of an OpenAI-compatible upstream (OpenRouter by
default), for the catalog's priced models.

A chat completion is held for its estimate (the prompt's tokens estimated offline plus
the output cap) before anything is sent upstream, so a call the balance cannot cover is
refused (402) without an upstream byte; the usage the upstream reports is then captured,
priced by the catalog, and the rest of the hold released in the same write. Streaming is
the next step: ``stream: true`` is refused for now.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response

from creditsd import jsonio
from creditsd.api.auth import LedgerDep
from creditsd.api.errors import OpenAIErrorRoute, error_responses, openai_error
from creditsd.api.http import ExactJSONResponse, bounded_body
from creditsd.inprocess import Ledger
from creditsd.pricing.catalog import TokenUse
from creditsd.pricing.providers import OpenAIChatUsage
from creditsd.proxy.payers import Paying, Reader

log = logging.getLogger("creditsd.proxy")

router = APIRouter(prefix="/openai/v1", route_class=OpenAIErrorRoute, tags=["proxy"])

CHARS_PER_TOKEN = 4  # the estimate's rule of thumb: no tokenizer ships offline for every model
TOKENS_PER_MESSAGE = 4  # the role and the separators a chat format adds to each message


def estimate_prompt_tokens(messages: Any) -> int:
    """An honest upper-leaning estimate of a prompt's tokens: its text's characters over
    ``CHARS_PER_TOKEN``, rounded up, plus ``TOKENS_PER_MESSAGE`` a message."""
    if not isinstance(messages, list):
        return 0
    characters = len(jsonio.dumps(messages))
    return math.ceil(characters / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


@router.get("/models", responses=error_responses(429))
async def list_models(ledger: LedgerDep, _key: Reader) -> ExactJSONResponse:
    """The catalog's priced models, in OpenAI's list shape."""
    catalog = await ledger.catalog()
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": name.split("/")[0]}
        for name in sorted(catalog.settings.models)
    ]
    return ExactJSONResponse({"object": "list", "data": data})


@router.post("/chat/completions", responses=error_responses(402, 403, 404, 413, 429, 502))
async def chat_completions(request: Request, ledger: LedgerDep, payer: Paying) -> Response:
    """A chat completion, held for before it is forwarded and billed on its real usage.

    An app key names the account that pays in ``X-Creditsd-Account``; a proxy key pays
    for its own account, within its spend limit (402 ``key_limit_reached``). The hold
    covers the prompt's estimated tokens plus ``max_completion_tokens`` (or
    ``max_tokens``, else ``[proxy] default_max_tokens``) at the catalog's prices.
    """
    raw = await bounded_body(request, ledger.settings.server.max_body_bytes)
    try:
        payload = jsonio.loads(raw)
    except jsonio.JSONError as exc:
        return openai_error(400, "invalid_json", f"the body is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return openai_error(400, "invalid_request", "the body must be a JSON object")
    if payload.get("stream"):
        return openai_error(400, "unsupported", "streaming is not supported yet")
    model = payload.get("model")
    catalog = await ledger.catalog()
    if not isinstance(model, str) or model not in catalog.settings.models:
        return openai_error(404, "model_not_found", f"model {model!r} is not in the catalog")
    cap = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        cap = ledger.settings.proxy.default_max_tokens
    estimate = TokenUse(
        model,
        input_tokens=estimate_prompt_tokens(payload.get("messages")),
        output_tokens=cap,
    )
    hold = await ledger.open_hold(
        payer.account_id, use=estimate, app=payer.app, proxy_key_id=payer.proxy_key_id
    )
    try:
        answer = await _forward(request, ledger, payload)
    except httpx.HTTPError as exc:
        await ledger.release_hold(hold.id)
        log.warning("upstream failed: %s", type(exc).__name__)
        return openai_error(502, "upstream_unavailable", "the model provider did not answer")
    if not answer.is_success:
        await ledger.release_hold(hold.id)  # a refused or failed call costs nothing
        return Response(answer.content, answer.status_code, media_type="application/json")
    usage = jsonio.loads(answer.content).get("usage")
    if usage is None:
        await ledger.release_hold(hold.id)
        log.warning("upstream reported no usage for %s; nothing charged", model)
    else:
        used = OpenAIChatUsage.model_validate(usage).use(model)
        await ledger.capture_hold(hold.id, use=used, app=payer.app)
    return Response(answer.content, 200, media_type="application/json")


async def _forward(request: Request, ledger: Ledger, payload: dict[str, Any]) -> httpx.Response:
    settings = ledger.settings.proxy
    secret = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    http: httpx.AsyncClient = request.app.state.proxy
    return await http.post(
        settings.base_url.rstrip("/") + "/chat/completions",
        content=jsonio.dumps(payload),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        timeout=settings.timeout_seconds,
    )
