"""``POST /v1/charges`` without FastAPI's per-request machinery.

FastAPI's routing, dependency solving and exception middleware cost about 350 µs of CPU
per charge, three times what the write itself costs in-process (``bench/http``). The
charge endpoint is served here instead, in front of the app: the same endpoint function
is called with the arguments FastAPI would build, from the same parts (the strict JSON
reader, the body model, the key cache and scopes, the header's type, in FastAPI's order:
body syntax, key, then every field problem at once), and every failure is answered by
the same :func:`~creditsd.api.errors.error_response`. It names FastAPI's route in the
scope, as FastAPI's router would, for the access log and metrics. Its OpenAPI description
stays FastAPI's; every other request goes on to FastAPI.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from creditsd.api.auth import authenticate, ledger_of
from creditsd.api.errors import error_response
from creditsd.api.http import StrictJSONRequest
from creditsd.fields import IdempotencyKey
from creditsd.ledger.endpoints import create_charge
from creditsd.ledger.endpoints import router as ledger_router
from creditsd.ledger.schemas import ChargeCreate

T = TypeVar("T")

_IDEMPOTENCY_HEADER = "Idempotency-Key"
_key_header: TypeAdapter[str | None] = TypeAdapter(IdempotencyKey | None)
_charge_body: TypeAdapter[ChargeCreate] = TypeAdapter(ChargeCreate)
_ROUTE = next(
    route
    for route in ledger_router.routes
    if isinstance(route, APIRoute) and route.endpoint is create_charge
)


class FastLane:
    """ASGI middleware answering ``POST /v1/charges`` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v1/charges":
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        request = StrictJSONRequest(scope, receive)
        try:
            response = await _charge(request)
        except Exception as exc:
            response = error_response(request, exc)
        await response(scope, receive, send)


async def _charge(request: StrictJSONRequest) -> Response:
    body = await request.parsed()
    key = await authenticate(request, "app")
    problems: list[dict[str, Any]] = []
    header = request.headers.get(_IDEMPOTENCY_HEADER)
    idempotency_key = _validated(_key_header, header, ("header", _IDEMPOTENCY_HEADER), problems)
    charge = None
    if not await request.body():
        problems.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
    else:
        charge = _validated(_charge_body, body, ("body",), problems)
    if problems or charge is None:
        raise RequestValidationError(problems)
    return await create_charge(charge, ledger_of(request), key, idempotency_key)


def _validated(
    adapter: TypeAdapter[T], value: Any, where: tuple[str, ...], problems: list[dict[str, Any]]
) -> T | None:
    """``value`` as the adapter's type, or None with its problems (located as FastAPI
    locates them) added to ``problems``."""
    try:
        return adapter.validate_python(value, from_attributes=True)  # as FastAPI does
    except ValidationError as exc:
        problems += [{**error, "loc": (*where, *error["loc"])} for error in exc.errors()]
        return None
