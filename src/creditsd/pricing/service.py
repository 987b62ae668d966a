"""Publishing catalog versions, and the version each process prices with."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.kit import jsonio
from creditsd.kit.pagination import Page, decode_id_cursor, encode_cursor
from creditsd.kit.rows import AnyRow
from creditsd.price_settings import PricingSettings
from creditsd.pricing import repository as repo
from creditsd.pricing.catalog import Catalog

log = logging.getLogger("creditsd.pricing")
_LOGGED_CHANGES = 20  # settings a publish's log line names; the rest are counted


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
        content = settings.content()
        if await repo.insert_version(conn, version, wanted, content, published_by=actor, now=now):
            previous = None if newest is None else await repo.get_version(conn, version - 1)
            changed = changes({} if previous is None else previous.catalog, content)
            shown = "; ".join(changed[:_LOGGED_CHANGES])
            if len(changed) > _LOGGED_CHANGES:
                shown += f"; and {len(changed) - _LOGGED_CHANGES} more"
            log.info("published catalog version %d by %s: %s", version, actor, shown)
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


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two catalogs' contents, one line per setting
    (``features.chat_message.price: 10 → 12``, ``models.acme/m: added``)."""
    old, new = _flat(jsonio.loads(jsonio.dumps(before))), _flat(jsonio.loads(jsonio.dumps(after)))
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            lines.append(f"{key}: added {new[key]}")
        elif key not in new:
            lines.append(f"{key}: removed")
        elif old[key] != new[key]:
            lines.append(f"{key}: {old[key]} → {new[key]}")
    return lines


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat |= _flat(item, f"{prefix}.{key}" if prefix else str(key))
    return flat


async def versions(conn: AsyncConnection, *, limit: int, cursor: str | None) -> Page[AnyRow]:
    """One page of the published versions (number, digest, who and when), newest first."""
    found = await repo.versions(conn, decode_id_cursor(cursor), limit + 1)
    page = found[:limit]
    return Page(page, encode_cursor(str(page[-1].version)) if len(found) > limit else None)


async def load(conn: AsyncConnection, version: int) -> Catalog:
    """A published version as a catalog."""
    row = await repo.get_version(conn, version)
    if row is None:
        raise LookupError(f"no catalog version {version}")
    return Catalog(version, PricingSettings.model_validate(row.catalog))


class PriceBook:
    """The catalog version this process prices with: the newest published one.

    It looks for a newer version at most every ``refresh_interval`` seconds, in the
    transaction of whoever asks, so every process follows a publish (``creditsd pricing
    reload``, SIGHUP) within that time. It never opens a transaction of its own.
    """

    def __init__(
        self, local: PricingSettings, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._local = local
        self._interval = local.refresh_interval
        self._monotonic = monotonic
        self._current: Catalog | None = None
        self._checked = float("-inf")

    def fresh(self) -> Catalog | None:
        """The catalog last loaded, if it was looked for within ``refresh_interval`` (no I/O)."""
        if self._monotonic() - self._checked < self._interval:
            return self._current
        return None

    async def current(
        self, conn: AsyncConnection, now: datetime, *, publish_first: bool = True
    ) -> Catalog:
        """The newest published catalog (as of at most ``refresh_interval`` ago), looked for
        in ``conn`` when due. Before anything is published, the local catalog is published
        as version 1, or (not ``publish_first``, for a read) shown as that version would be."""
        cached = self.fresh()
        if cached is not None:
            return cached
        newest = await repo.latest(conn)
        if newest is None and not publish_first:
            return Catalog(1, self._local)
        if newest is None:  # remembered once a later lookup finds it committed
            catalog, _ = await publish(conn, self._local, now, actor="creditsd")
            return catalog
        if self._current is None or self._current.version != newest.version:
            catalog = await load(conn, int(newest.version))
        else:
            catalog = self._current
        self.remember(catalog)
        return catalog

    def remember(self, catalog: Catalog) -> None:
        """Price with ``catalog`` from now on (once the transaction that published it has
        committed)."""
        self._current = catalog
        self._checked = self._monotonic()
