"""The hottest routes without FastAPI's per-request machinery: ``POST /v1/charges`` and
the proxy's model calls (``POST /openai/v1/chat/completions`` and ``/responses``).

FastAPI's routing, dependency solving and exception middleware cost about 350 µs of CPU
per charge, three times what the write itself costs in-process (``bench/http``), and a
sixth of a proxied call. These routes are served here instead, in front of the app: the
same endpoint function is called with the arguments FastAPI would build, from the same
parts (the strict JSON reader, the body model, the key cache and scopes, the payer
dependency, the headers' types), in FastAPI's order (a dependency's own parameters, the
dependency, the endpoint's parameters, every parameter problem at once; for a charge the
body's syntax first), and every failure is answered by the same
:func:`~creditsd.api.errors.error_response`. Each names FastAPI's route in the scope, as
FastAPI's router would, for the access log and metrics. Their OpenAPI description stays
FastAPI's; every other request goes on to FastAPI. ``tests/api/test_fastlane.py`` sends
the same requests both ways and compares the answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import StringConstraints, TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from creditsd.api.auth import authenticate, bearer, ledger_of
from creditsd.api.errors import error_response
from creditsd.api.http import StrictJSONRequest
from creditsd.api.routes.ledger import create_charge
from creditsd.api.routes.ledger import router as ledger_router
from creditsd.api.schemas.ledger import ChargeCreate
from creditsd.kit.fields import IdempotencyKey
from creditsd.proxy import endpoints as proxy
from creditsd.proxy.payers import MEMBER_HEADER_PATTERN, payer

T = TypeVar("T")

_IDEMPOTENCY_HEADER = "Idempotency-Key"
_ACCOUNT_HEADER = "x-creditsd-account"
_MEMBER_HEADER = "x-creditsd-member"
_CLAMP_HEADER = "x-creditsd-clamp"
_key_header: TypeAdapter[str | None] = TypeAdapter(IdempotencyKey | None)
_charge_body: TypeAdapter[ChargeCreate] = TypeAdapter(ChargeCreate)
_account_header: TypeAdapter[str | None] = TypeAdapter(
    Annotated[str, StringConstraints(max_length=255)] | None
)
_member_header: TypeAdapter[str | None] = TypeAdapter(
    Annotated[str, StringConstraints(pattern=MEMBER_HEADER_PATTERN)] | None
)
_clamp_header: TypeAdapter[bool | None] = TypeAdapter(bool | None)

Lane = Callable[[Request], Awaitable[Response]]


def _route(router_routes: list[Any], endpoint: Callable[..., Any]) -> APIRoute:
    return next(
        route
        for route in router_routes
        if isinstance(route, APIRoute) and route.endpoint is endpoint
    )


class FastLane:
    """ASGI middleware answering the lanes' routes itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = _LANES.get(scope["path"]) if scope["type"] == "http" else None
        if lane is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        route, serve = lane
        scope["route"] = route
        request = StrictJSONRequest(scope, receive)
        try:
            response = await serve(request)
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


def _model_call(
    endpoint: Callable[..., Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A lane for a proxy route taking the payer and ``X-Creditsd-Clamp``."""

    async def serve(request: Request) -> Response:
        problems: list[dict[str, Any]] = []
        account = _header(request, _ACCOUNT_HEADER, _account_header, problems)
        member = _header(request, _MEMBER_HEADER, _member_header, problems)
        paying = None
        if not problems:  # FastAPI calls a dependency only once its own parameters are valid
            paying = await payer(request, await bearer(request), account, member)
        clamp = _header(request, _CLAMP_HEADER, _clamp_header, problems)
        if problems or paying is None:
            raise RequestValidationError(problems)
        return await endpoint(request, ledger_of(request), paying, clamp)

    return serve


def _header(
    request: Request, name: str, adapter: TypeAdapter[T], problems: list[dict[str, Any]]
) -> T | None:
    """The request's header ``name`` as the adapter's type (see :func:`_validated`)."""
    return _validated(adapter, request.headers.get(name), ("header", name), problems)


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


_LANES: dict[str, tuple[APIRoute, Callable[[Any], Awaitable[Response]]]] = {
    "/v1/charges": (_route(ledger_router.routes, create_charge), _charge),
    **{
        path: (_route(proxy.router.routes, endpoint), _model_call(endpoint))
        for path, endpoint in (
            ("/openai/v1/chat/completions", proxy.chat_completions),
            ("/openai/v1/responses", proxy.create_response),
        )
    },
}
