"""Publishing catalog versions, and the version each process prices with."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from creditsd import db, jsonio
from creditsd.audit import repository as audit
from creditsd.price_settings import PricingSettings
from creditsd.pricing import repository as repo
from creditsd.pricing.catalog import Catalog


def digest(settings: PricingSettings) -> str:
    """A digest of a catalog's content: equal catalogs, equal digests."""
    return hashlib.sha256(jsonio.canonical(settings.content()).encode()).hexdigest()


async def publish(
    conn: AsyncConnection, settings: PricingSettings, now: datetime, *, actor: str
) -> tuple[Catalog, bool]:
    """Make ``settings`` the current catalog unless it already is; True when a version was made.

    Versions are numbered one after another; two publishers racing for the same number
    meet on its primary key, and the later one looks again (audited).
    """
    wanted = digest(settings)
    for _attempt in range(5):
        newest = await repo.latest(conn)
        if newest is not None and newest.digest == wanted:
            return Catalog(int(newest.version), settings), False
        version = 1 if newest is None else int(newest.version) + 1
        if await repo.insert_version(
            conn, version, wanted, settings.content(), published_by=actor, now=now
        ):
            await audit.record(
                conn,
                actor=actor,
                action="pricing.publish",
                target="pricing",
                before=None if newest is None else {"version": int(newest.version)},
                after={"version": version, "digest": wanted},
                now=now,
            )
            return Catalog(version, settings), True
    raise RuntimeError("catalog versions kept changing while publishing")  # pragma: no cover


async def load(conn: AsyncConnection, version: int) -> Catalog:
    """A published version as a catalog."""
    row = await repo.get_version(conn, version)
    if row is None:
        raise LookupError(f"no catalog version {version}")
    return Catalog(version, PricingSettings.model_validate(row.catalog))


class PriceBook:
    """The catalog version this process prices with: the newest published one.

    It looks for a newer version at most every ``refresh_interval`` seconds, so every
    process follows a publish (``creditsd pricing reload``, SIGHUP) within that time.
    Before anything is published, the local catalog is published first.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        local: PricingSettings,
        clock: Callable[[], datetime],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._local = local
        self._clock = clock
        self._monotonic = monotonic
        self._current: Catalog | None = None
        self._checked = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> Catalog | None:
        """The catalog last loaded, without looking for a newer one (no I/O: safe inside
        another transaction)."""
        return self._current

    async def current(self) -> Catalog:
        """The newest published catalog (as of at most ``refresh_interval`` ago)."""
        fresh = self._monotonic() - self._checked < self._local.refresh_interval
        if self._current is not None and fresh:
            return self._current
        return await self.refresh()

    async def refresh(self) -> Catalog:
        """Look for a newer published version now."""
        async with self._lock:
            newest = await db.run(self._engine, repo.latest, readonly=True)
            if newest is None:
                self._current, _ = await self.publish(self._local, actor="creditsd")
            elif self._current is None or self._current.version != newest.version:
                version = int(newest.version)
                self._current = await db.run(
                    self._engine, lambda conn: load(conn, version), readonly=True
                )
            self._checked = self._monotonic()
            return self._current

    async def publish(self, settings: PricingSettings, *, actor: str) -> tuple[Catalog, bool]:
        """Publish ``settings`` (if it differs from the newest) and price with it from now on."""
        catalog, created = await db.run(
            self._engine, lambda conn: publish(conn, settings, self._clock(), actor=actor)
        )
        self._local = settings
        self._current = catalog
        self._checked = self._monotonic()
        return catalog, created
