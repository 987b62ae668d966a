"""The FastAPI application: routers, error handlers, health checks and the background work."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import IO

from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import ASGIApp

from creditsd.api import docs, errors, metrics
from creditsd.api.auth import KeyCache, LedgerDep
from creditsd.api.fastlane import FastLane
from creditsd.api.http import ExactJSONResponse
from creditsd.api.observe import Observed
from creditsd.api.routes.audit import router as audit_router
from creditsd.api.routes.autotopup import router as autotopup_router
from creditsd.api.routes.clerk import webhooks as clerk_webhooks
from creditsd.api.routes.gateway import from_app, from_gateway
from creditsd.api.routes.holds import router as holds_router
from creditsd.api.routes.ledger import router as ledger_router
from creditsd.api.routes.members import router as members_router
from creditsd.api.routes.pricing import router as pricing_router
from creditsd.api.routes.proxy_keys import router as proxy_keys_router
from creditsd.api.routes.stripe import router as stripe_router
from creditsd.api.routes.stripe import webhooks as stripe_webhooks
from creditsd.api.routes.usage import router as usage_router
from creditsd.api.routes.webhooks import router as webhooks_router
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.keys.service import ApiKey
from creditsd.proxy.connections import UpstreamClient
from creditsd.proxy.endpoints import router as proxy_router
from creditsd.proxy.ratelimit import RateLimiter
from creditsd.proxy_keys import service as proxy_keys
from creditsd.proxy_keys.models import ProxyKey
from creditsd.stripe.billing import StripeBilling
from creditsd.version import VERSION
from creditsd.web import pages
from creditsd.web.admin import router as admin_pages
from creditsd.web.autotopup_pages import router as autotopup_pages
from creditsd.web.endpoints import router as portal_router
from creditsd.web.portal import router as portal_pages
from creditsd.worker import background

# Young objects the collector lets gather before it looks (CPython's default is 700). A
# batch of usage makes tens of thousands that die with its request; at 700 the collector
# ran ~30 times a batch, kept them alive long enough to count as old, and so set off a full
# collection of the whole heap (~90 ms on two cores) every few batches.
GC_THRESHOLD = 10_000


class _ObservedAPI(FastAPI):
    """FastAPI inside :class:`Observed`, outside even its error middleware, so every answer
    (a 500 too) carries its request id, is timed and is logged."""

    access_log: IO[str] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        return Observed(super().build_middleware_stack(), self.access_log)


def key_caches(seconds: float) -> tuple[KeyCache[ApiKey], KeyCache[ProxyKey]]:
    """The caches of keys that authenticated: API keys', proxy keys'."""
    return KeyCache(seconds, keys.authenticate), KeyCache(seconds, proxy_keys.authenticate)


def create_app(
    ledger: Ledger,
    *,
    sweep: bool = True,
    fast_lane: bool = True,
    access_log: IO[str] | None = None,
) -> FastAPI:
    """The API over ``ledger``; the caller opens and closes the ledger. ``sweep`` runs the
    background work (expiry sweeps, outbox delivery, reconciliation) while the app serves;
    ``fast_lane`` serves charges and the proxy's model calls in front of FastAPI (off only
    to compare the two in tests); ``access_log`` receives one JSON line per request. Serving
    raises this process's young-object collection threshold to ``GC_THRESHOLD``."""
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_THRESHOLD), *older)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(background(ledger)) if sweep else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await billing.close()
            await proxy.aclose()

    app = _ObservedAPI(
        title="creditsd",
        version=VERSION,
        summary="An exact, double-entry credits ledger for AI products.",
        default_response_class=ExactJSONResponse,
        lifespan=lifespan,
        # creditsd emits no OpenTelemetry; checking for a provider costs ~20 µs a request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served by docs.install, without a CDN
        redoc_url=None,  # ReDoc would load its script from a CDN
    )
    app.access_log = access_log
    app.state.ledger = ledger
    app.state.key_cache, app.state.proxy_key_cache = key_caches(
        ledger.settings.server.key_cache_seconds
    )
    app.state.stripe = billing = StripeBilling(ledger)
    app.state.proxy = proxy = UpstreamClient(ledger.settings.proxy.timeout_seconds)
    app.state.rate_limiter = RateLimiter()  # the proxy's requests a minute per key
    errors.install(app)
    docs.install(app)
    pages.install(app)
    if fast_lane:
        app.add_middleware(FastLane)
    _include_routers(app, ledger.settings.server.metrics)
    _add_health_checks(app)
    return app


def _include_routers(app: FastAPI, metrics_access: str) -> None:
    """Every domain's routes, the webhook receivers, the pages and ``/metrics``."""
    app.include_router(ledger_router)
    app.include_router(members_router)
    app.include_router(autotopup_router)
    app.include_router(holds_router)
    app.include_router(pricing_router)
    app.include_router(usage_router)
    app.include_router(stripe_router)
    app.include_router(stripe_webhooks)
    app.include_router(clerk_webhooks)
    app.include_router(from_gateway)
    app.include_router(from_app)
    app.include_router(proxy_router)
    app.include_router(proxy_keys_router)
    app.include_router(webhooks_router)
    app.include_router(audit_router)
    app.include_router(portal_router)
    app.include_router(portal_pages)
    app.include_router(autotopup_pages)
    app.include_router(admin_pages)
    app.include_router(metrics.router(metrics_access))


def _add_health_checks(app: FastAPI) -> None:
    """``GET /healthz`` and ``GET /readyz``."""

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses=errors.error_responses())
    async def readyz(ledger: LedgerDep) -> dict[str, str]:
        """The database answers."""
        await ledger.database.read(lambda conn, _now: conn.execute(text("SELECT 1")))
        return {"status": "ready"}
