"""Strict JSON in (decimals exact, NaN and duplicate keys refused), exact JSON out."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import JSONResponse

from creditsd.kit import jsonio
from creditsd.kit.errors import CreditsError, InvalidRequest


class InvalidJSON(CreditsError):
    """The body is not JSON we accept."""

    code = "invalid_json"
    status = 400


class InvalidNumber(InvalidRequest):
    """NaN or Infinity in the body (no JSON number means that), or a number too long or
    too large to hold exactly."""

    code = "invalid_number"


class BodyTooLarge(CreditsError):
    """The body passes the size limit."""

    code = "body_too_large"
    status = 413


class UnsupportedMediaType(CreditsError):
    """Bodies must be ``application/json``."""

    code = "unsupported_media_type"
    status = 415


class ExactJSONResponse(JSONResponse):
    """JSON with Decimal written as exact numbers and timestamps in RFC 3339."""

    def render(self, content: Any) -> bytes:
        if isinstance(content, BaseModel):
            content = content.model_dump(mode="python")
        return jsonio.render(content)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def bounded_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as the declared length or what has arrived
    (chunked too) passes ``limit``: nothing larger is ever held in memory."""
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"bodies are at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"bodies are at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class StrictJSONRequest(Request):
    """A request whose body is bounded by ``[server] max_body_bytes`` as it arrives and
    whose JSON is parsed by :func:`creditsd.kit.jsonio.loads`."""

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            limit = self.app.state.ledger.settings.server.max_body_bytes
            self._body = await bounded_body(self, limit)
        return self._body

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if not _is_json(self.headers.get("content-type")):
                raise UnsupportedMediaType("send the body as application/json")
            try:
                self._json = jsonio.loads(body)
            except jsonio.NonStandardNumber as exc:
                raise InvalidNumber(str(exc)) from None
            except jsonio.JSONError as exc:
                raise InvalidJSON(f"the body is not valid JSON: {exc}") from None
        return self._json

    async def parsed(self) -> Any:
        """The JSON body of a write (None when there is none), refusing one too large, not
        JSON or malformed."""
        if self.method in {"POST", "PUT", "PATCH"} and await self.body():
            return await self.json()
        return None


class StrictJSONRoute(APIRoute):
    """Parses the body before FastAPI does, so a bad body gets our error, not a generic 400."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            strict = StrictJSONRequest(request.scope, request.receive)
            await strict.parsed()
            return await handler(strict)

        return route
