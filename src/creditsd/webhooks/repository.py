"""Every query about webhook endpoints and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from creditsd.kit.rows import insert_or_skip
from creditsd.tables import accounts, outbox, webhook_endpoints
from creditsd.webhooks.models import APP, BALANCE_SYNC, GATEWAY, Backlog, Endpoint, Message

_W = webhook_endpoints.c
_O = outbox.c
_ENDPOINT_COLUMNS = (
    _W.id,
    _W.url,
    _W.events,
    _W.secret,
    _W.description,
    _W.created_at,
    _W.disabled_at,
)
_MESSAGE_COLUMNS = (
    _O.id,
    _O.destination,
    _O.message_id,
    _O.event_type,
    _O.account_id,
    _O.payload,
    _O.status,
    _O.attempts,
    _O.next_attempt_at,
    _O.last_error,
    _O.created_at,
    _O.delivered_at,
)


def _message(row: Any) -> Message:
    return Message(**row._asdict())


async def insert_endpoint(
    conn: AsyncConnection, endpoint: Endpoint, idempotency_key: str, fingerprint: str
) -> bool:
    """Register an endpoint; False when its idempotency key is already taken."""
    insert = insert_or_skip(conn)
    result = await conn.execute(
        insert(webhook_endpoints)
        .values(
            id=endpoint.id,
            url=endpoint.url,
            events=endpoint.events,
            secret=endpoint.secret,
            description=endpoint.description,
            created_at=endpoint.created_at,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
        .on_conflict_do_nothing(index_elements=[_W.idempotency_key])
        .returning(_W.id)
    )
    return result.first() is not None


async def endpoint_by_key(
    conn: AsyncConnection, idempotency_key: str
) -> tuple[Endpoint, str | None] | None:
    """The endpoint registered under this key, and the fingerprint of what was asked."""
    row = (
        await conn.execute(
            select(*_ENDPOINT_COLUMNS, _W.fingerprint).where(_W.idempotency_key == idempotency_key)
        )
    ).first()
    if row is None:
        return None
    values = row._asdict()
    fingerprint = values.pop("fingerprint")
    return Endpoint(**values), fingerprint


async def endpoints(conn: AsyncConnection, *, enabled_only: bool = True) -> list[Endpoint]:
    """The registered endpoints, oldest first."""
    query = select(*_ENDPOINT_COLUMNS).order_by(_W.created_at, _W.id)
    if enabled_only:
        query = query.where(_W.disabled_at.is_(None))
    return [Endpoint(**row._asdict()) for row in await conn.execute(query)]


async def get_endpoint(conn: AsyncConnection, endpoint_id: str) -> Endpoint | None:
    """One endpoint, enabled or not."""
    row = (await conn.execute(select(*_ENDPOINT_COLUMNS).where(_W.id == endpoint_id))).first()
    return None if row is None else Endpoint(**row._asdict())


async def disable_endpoint(conn: AsyncConnection, endpoint_id: str, now: datetime) -> None:
    """Stop sending to an endpoint (what it was sent stays on record)."""
    await conn.execute(
        update(webhook_endpoints)
        .where(_W.id == endpoint_id, _W.disabled_at.is_(None))
        .values(disabled_at=now)
    )


async def claim(
    conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[Message]:
    """Take up to ``limit`` due messages for delivery until ``lease_until``.

    A message waits while an earlier one for the same destination and account is still
    pending, so each endpoint hears of an account's changes in order. Two workers never
    hold one message: the update re-checks the lease, so only one of them takes it.
    """
    await _coalesce_balance_syncs(conn, now)
    earlier = aliased(outbox)
    blocked = exists().where(
        earlier.c.status == "pending",
        earlier.c.destination == _O.destination,
        earlier.c.account_id == _O.account_id,
        earlier.c.id < _O.id,
    )
    free = or_(_O.locked_until.is_(None), _O.locked_until < now)
    due = (
        select(_O.id)
        .where(_O.status == "pending", _O.next_attempt_at <= now, free, ~blocked)
        .order_by(_O.id)
        .limit(limit)
    )
    ids = list((await conn.execute(due)).scalars())
    if not ids:
        return []
    rows = await conn.execute(
        update(outbox)
        .where(_O.id.in_(ids), _O.status == "pending", free)
        .values(locked_until=lease_until, attempts=_O.attempts + 1)
        .returning(*_MESSAGE_COLUMNS)
    )
    return sorted((_message(row) for row in rows), key=lambda message: message.id)


async def _coalesce_balance_syncs(conn: AsyncConnection, now: datetime) -> None:
    """Drop each waiting balance sync that a newer one for the same account and
    destination replaces: only the latest figure is worth sending."""
    newer = aliased(outbox)
    free = or_(_O.locked_until.is_(None), _O.locked_until < now)
    await conn.execute(
        delete(outbox).where(
            _O.event_type == BALANCE_SYNC,
            _O.status == "pending",
            free,
            exists().where(
                newer.c.event_type == BALANCE_SYNC,
                newer.c.status == "pending",
                newer.c.destination == _O.destination,
                newer.c.account_id == _O.account_id,
                newer.c.id > _O.id,
            ),
        )
    )


async def set_payload(conn: AsyncConnection, message_id: int, payload: dict[str, Any]) -> None:
    """Replace what a message will send."""
    await conn.execute(update(outbox).where(_O.id == message_id).values(payload=payload))


async def settle(
    conn: AsyncConnection,
    message_id: int,
    *,
    status: str,
    next_attempt_at: datetime | None,
    error: str | None,
    now: datetime,
) -> None:
    """Record a delivery's outcome: delivered, to be tried again at a time, or dead."""
    values: dict[str, Any] = {"status": status, "locked_until": None, "last_error": error}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if status == "delivered":
        values["delivered_at"] = now
    await conn.execute(update(outbox).where(_O.id == message_id).values(**values))


async def retry(conn: AsyncConnection, message_id: int, now: datetime) -> Message | None:
    """Send a message again, whatever became of it (manual redelivery). Past its maximum
    age it gets this one more try before it is dead again."""
    rows = await conn.execute(
        update(outbox)
        .where(_O.id == message_id)
        .values(status="pending", next_attempt_at=now, locked_until=None)
        .returning(*_MESSAGE_COLUMNS)
    )
    row = rows.first()
    return None if row is None else _message(row)


async def messages(
    conn: AsyncConnection,
    *,
    destination: str | None,
    status: str | None,
    before: int | None,
    limit: int,
) -> list[Message]:
    """Deliveries, newest first."""
    query = select(*_MESSAGE_COLUMNS).order_by(_O.id.desc()).limit(limit)
    if destination is not None:
        query = query.where(_O.destination == destination)
    if status is not None:
        query = query.where(_O.status == status)
    if before is not None:
        query = query.where(_O.id < before)
    return [_message(row) for row in await conn.execute(query)]


async def account_messages(conn: AsyncConnection, account_id: str, limit: int) -> list[Message]:
    """Up to ``limit`` deliveries about one account, newest first, read through the
    (destination, account) index: every destination is named."""
    destinations = [GATEWAY, APP, *(await conn.execute(select(_W.id))).scalars()]
    query = (
        select(*_MESSAGE_COLUMNS)
        .where(_O.destination.in_(destinations), _O.account_id == account_id)
        .order_by(_O.id.desc())
        .limit(limit)
    )
    return [_message(row) for row in await conn.execute(query)]


async def backlog(conn: AsyncConnection) -> Backlog:
    """How many messages are pending and dead, and when the oldest pending one was written
    (the status index finds them without reading the delivered ones)."""
    rows = await conn.execute(
        select(_O.status, func.count(), func.min(_O.created_at))
        .where(_O.status.in_(("pending", "dead")))
        .group_by(_O.status)
    )
    found = {row[0]: (row[1], row[2]) for row in rows}
    pending, oldest = found.get("pending", (0, None))
    return Backlog(pending=pending, dead=found.get("dead", (0, None))[0], oldest_pending_at=oldest)


async def low_balance_thresholds(
    conn: AsyncConnection, account_ids: list[str]
) -> dict[str, int | None]:
    """Each account's own balance.low threshold (None: it has none)."""
    if not account_ids:
        return {}
    rows = await conn.execute(
        select(accounts.c.id, accounts.c.low_balance_threshold).where(
            accounts.c.id.in_(account_ids)
        )
    )
    return {row.id: row.low_balance_threshold for row in rows}
