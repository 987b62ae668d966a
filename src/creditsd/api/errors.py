"""One error shape for every failure: ``{"error": {"code", "message", ...details}}``; on
the OpenAI-compatible proxy, OpenAI's (the same with ``type`` and ``param``); on the
pages, a page."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from creditsd.api.http import ExactJSONResponse
from creditsd.api.observe import REQUEST_ID_SCOPE
from creditsd.kit import db
from creditsd.kit.errors import CreditsError, Unavailable
from creditsd.kit.money import Money
from creditsd.kit.repeats import repeats
from creditsd.ledger.errors import Units
from creditsd.web import pages

log = logging.getLogger("creditsd.api")
RETRY_AFTER_SECONDS = 1  # a busy or restarting database is usually back within seconds
# Set in a request's scope by the server when it cut the request for arriving too slowly.
TIMED_OUT_SCOPE = "creditsd.timed_out"
TOO_SLOW_MESSAGE = "the request did not arrive in time"
CLIENT_CLOSED = 499  # nginx's status for a client that left before its answer; never sent


class ErrorDetail(BaseModel):
    """What went wrong; extra fields depend on the code (``required``, ``available``, …)."""

    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the errors an endpoint can give."""
    descriptions = {
        400: "Malformed request (invalid JSON)",
        401: "Missing or unknown API key",
        402: "Insufficient credits: `required` and `available` say by how much",
        403: "The API key's scope does not allow this",
        404: "Not found",
        409: "Conflicts with an earlier request or the current state",
        413: "Body too large",
        415: "Body is not JSON",
        422: "Invalid input",
        429: "Too many requests: retry after `Retry-After` seconds",
        502: "An upstream (payment or model provider) failed or refused; nothing was charged",
        503: "Database unavailable; retry with the same idempotency key",
    }
    always = (400, 401, 413, 415, 422, 503)
    return {
        status: {"model": ErrorBody, "description": descriptions[status]}
        for status in sorted({*always, *statuses})
    }


def error_detail(
    code: str, message: str, money: Money, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``{"code", "message", …details}``, amounts in details converted to credits."""
    return {"code": code, "message": message, **_in_credits(money, details)}


def _in_credits(money: Money, details: dict[str, Any] | None) -> dict[str, Any]:
    return {
        key: money.to_decimal(value) if isinstance(value, Units) else value
        for key, value in (details or {}).items()
    }


_HEADERS = {401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": str(RETRY_AFTER_SECONDS)}}


OPENAI_PREFIX = "/openai/"  # the proxy's routes answer in OpenAI's error shape
_OPENAI_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "rate_limit_error",
}


def _headers(status: int, details: dict[str, Any] | None) -> dict[str, str] | None:
    """A 401 names the scheme; a 503, or an error whose details carry ``retry_after``
    (seconds), says when to come back (``Retry-After``)."""
    if details and "retry_after" in details:
        return {**_HEADERS.get(status, {}), "Retry-After": str(details["retry_after"])}
    return _HEADERS.get(status)


def render(
    status: int,
    code: str,
    message: str,
    money: Money,
    details: dict[str, Any] | None = None,
    *,
    openai: bool = False,
) -> ExactJSONResponse:
    """The error response, with amounts in details converted from minor units to credits;
    with ``openai``, in OpenAI's shape too (``type`` and ``param``), which its SDKs read.

    A 503 says when to come back (``Retry-After``, seconds): the same idempotency key
    then answers the first result if the write did commit.
    """
    if openai:
        return openai_error(status, code, message, _in_credits(money, details))
    return ExactJSONResponse(
        {"error": error_detail(code, message, money, details)},
        status_code=status,
        headers=_headers(status, details),
    )


def openai_error(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> ExactJSONResponse:
    """An error in OpenAI's shape, which its SDKs read (``details`` beside its fields)."""
    kind = _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    body = {
        "error": {"message": message, "type": kind, "param": None, "code": code, **(details or {})}
    }
    return ExactJSONResponse(body, status_code=status, headers=_headers(status, details))


_UNAVAILABLE = "the database is unavailable; retry with the same idempotency key"
# The same on a page, for a person: idempotency keys are for programs.
_UNAVAILABLE_PAGE = "The service is busy or restarting; try again in a moment."
_HANDLED = (
    CreditsError,
    RequestValidationError,
    HTTPException,
    ClientDisconnect,
    *db.OUTAGES,
    Exception,
)


def error_response(request: Request, exc: Exception) -> Response:
    """Our error shape for any failure, OpenAI's on the proxy's routes, a page on the
    pages' routes; what is not ours is logged, never shown."""
    status, code, message, details = _failure(request, exc)
    if pages.is_page(request):
        shown = _UNAVAILABLE_PAGE if code == Unavailable.code else message
        return pages.error_page(request, status, shown, _headers(status, details))
    money: Money = request.app.state.ledger.money
    openai = request.url.path.startswith(OPENAI_PREFIX)
    return render(status, code, message, money, details, openai=openai)


Failure = tuple[int, str, str, dict[str, Any] | None]  # status, code, message, details


def _failure(request: Request, exc: Exception) -> Failure:
    if isinstance(exc, CreditsError):
        return exc.status, exc.code, exc.message, exc.details
    if isinstance(exc, RequestValidationError):
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid"}
        message = f"{first['field']}: {first['message']}"
        return 422, "validation_error", message, {"problems": problems}
    if isinstance(exc, HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        return exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), None
    if isinstance(exc, ClientDisconnect):  # nobody to answer: the access log says it
        if request.scope.get(TIMED_OUT_SCOPE):
            return 408, "request_timeout", TOO_SLOW_MESSAGE, None
        return CLIENT_CLOSED, "client_closed_request", "the client left mid-request", None
    if isinstance(exc, db.OUTAGES):
        repeats.say(log, f"database unavailable: {db.described(exc)}")
        return 503, "unavailable", _UNAVAILABLE, None
    request_id = request.scope.get(REQUEST_ID_SCOPE, b"-").decode()
    log.error(
        "unexpected error on %s %s (request %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    return 500, "internal_error", "an unexpected error occurred", None


def install(app: FastAPI) -> None:
    """Register :func:`error_response` for every failure."""

    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, exc)

    for kind in _HANDLED:
        app.add_exception_handler(kind, handle)
