"""Customer accounts: the account a name (its id or an alias) stands for, accounts read
with their live figures, opening one (with its initial grant) and changing its settings,
its aliases, its status: active, frozen (each freeze held by an operator or a dispute)
or closed, and the time zone its spend limits count in. Each operation runs inside a
transaction its caller owns; none commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.kit.fields import check_metadata
from creditsd.ledger import limit_zones, service, statements
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import posting as posting_engine
from creditsd.ledger import repository as repo
from creditsd.ledger import runway as runway_math
from creditsd.ledger.errors import AccountNotFound, AliasTaken, OverdraftInUse
from creditsd.ledger.models import SYSTEM_APP, Account, Metadata, check_account_id
from creditsd.ledger.posting import Policy
from creditsd.ledger.windows import check_zone

OPERATOR = "operator"  # the freeze all operators share (the audit log says which one)


async def live_held(conn: AsyncConnection, account_id: str, held: int, now: datetime) -> int:
    """A stored held figure without the holds that expired unswept."""
    if not held:
        return held
    return held - (await repo.expired_hold_totals(conn, [account_id], now)).get(account_id, 0)


async def resolve_account(
    conn: AsyncConnection, name: str, policy: Policy, now: datetime, *, create: bool = True
) -> str:
    """The id of the account this id or alias names, creating it when the policy allows."""
    check_account_id(name)
    for _attempt in range(3):
        account_id = await repo.resolve_name(conn, name)
        if account_id is not None:
            return account_id
        if not (create and policy.auto_create):
            raise AccountNotFound(name)
        if await posting_engine.open_customer(conn, name, policy, now):
            return name
    raise AccountNotFound(name)  # pragma: no cover - created and vanished in one breath


def unopened_account(name: str, policy: Policy) -> Account:
    """What a read shows of an account that does not exist yet: the account its first
    write will create (its sign-up grant, nothing else), with no ``created_at``. Reads
    never create accounts."""
    check_account_id(name)
    grant = policy.signup_grant
    return Account(
        id=name,
        kind="customer",
        balance=grant,
        held=0,
        overdraft_limit=0,
        metadata=None,
        created_at=None,
        updated_at=None,
        by_source={"signup": grant} if grant else {},
    )


async def _accounts(conn: AsyncConnection, rows: list[Any], now: datetime) -> list[Account]:
    """Accounts from their stored rows, with live held figures and aliases."""
    ids = [row.id for row in rows]
    holding = [row.id for row in rows if row.held]
    expired = await repo.expired_hold_totals(conn, holding, now) if holding else {}
    aliases = await repo.aliases_of(conn, ids)
    sources = await lot_repo.by_source(conn, ids)
    still = [row.id for row in rows if row.status != "active"]  # active: no freeze is left
    freezes = await repo.freezes_of(conn, still) if still else {}
    return [
        repo.account_from_row(
            row,
            row.held - expired.get(row.id, 0),
            aliases.get(row.id, []),
            _with_overdrawn(sources.get(row.id, {}), row.balance),
            freezes.get(row.id, []),
        )
        for row in rows
    ]


def _with_overdrawn(by_source: dict[str, int], balance: int) -> dict[str, int]:
    """The lots by source, plus what the balance is below zero, so the parts add up."""
    below = balance - sum(by_source.values())
    return {**by_source, "overdrawn": below} if below else by_source


async def get_account(conn: AsyncConnection, account_id: str, now: datetime) -> Account:
    """An account by its own id, with live held and available figures and its aliases."""
    row = await repo.get_account_row(conn, account_id)
    if row is None:
        raise AccountNotFound(account_id)
    (account,) = await _accounts(conn, [row], now)
    return account


async def account_runway(
    conn: AsyncConnection, account_id: str, now: datetime
) -> runway_math.Runway:
    """How long an account's credits last at its recent burn (see :mod:`runway`)."""
    account = await get_account(conn, account_id, now)
    assert account.created_at is not None  # read from its row
    allowance = account.by_source.get(runway_math.ALLOWANCE_SOURCE, 0)
    available = runway_math.available_without_allowance(account.available, allowance)
    burn = await repo.burn_of(conn, account.id, now)
    return runway_math.runway(available, burn, now - account.created_at, now)


async def refresh_runway_burns(conn: AsyncConnection, now: datetime) -> int:
    """Store on each account's row its burn per day (:func:`runway.burn_per_day`): of the
    accounts that spent in the last 7 days, and 0 for those that had a burn and spent
    nothing since; the engine's runway warnings read it. Answers how many changed."""
    spent = await repo.burns(conn, now)
    changed = {}
    for row in await repo.runway_rows(conn, spent):
        burn = spent.get(row.id, runway_math.Burn(0, 0))
        per_day = runway_math.burn_per_day(burn, now - row.created_at)
        if per_day != row.runway_burn:
            changed[row.id] = per_day
    await repo.store_burns(conn, changed)
    return len(changed)


async def list_accounts(
    conn: AsyncConnection, limit: int, after: str | None, search: str | None, now: datetime
) -> tuple[list[Account], bool]:
    """Up to ``limit`` customer accounts after ``after`` in id order, and whether more remain."""
    rows = await repo.list_accounts(conn, limit + 1, after, search)
    return await _accounts(conn, rows[:limit], now), len(rows) > limit


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """What a caller asks of an account it opens (``PUT /v1/accounts/{id}``)."""

    initial_grant: int = 0
    overdraft_limit: int | None = None
    aliases: tuple[str, ...] = ()
    metadata: Metadata | None = None
    status: str | None = None
    low_balance_threshold: int | None = None
    time_zone: str | None = None  # an IANA zone (``UTC`` too); None leaves it as it is


async def open_account(
    conn: AsyncConnection,
    account_id: str,
    spec: AccountSpec,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> tuple[Account, bool]:
    """Create the account if absent, else apply the settings given; True when created.

    ``initial_grant`` is only paid when this call creates the account.
    """
    check_account_id(account_id)
    existing = await repo.resolve_name(conn, account_id)
    created = False
    if existing is None:
        created = await posting_engine.open_customer(
            conn,
            account_id,
            policy,
            now,
            overdraft_limit=spec.overdraft_limit or 0,
            metadata=spec.metadata,
        )
        existing = account_id if created else await resolve_account(conn, account_id, policy, now)
    if created:
        await _finish_opening(conn, existing, spec, policy, now, actor=actor)
    else:
        await _update_settings(conn, existing, spec, policy, now, actor=actor)
    await _add_aliases(conn, existing, spec.aliases, policy, now)
    if spec.status is not None:
        await set_status(conn, existing, spec.status, now, actor=actor)
    if spec.low_balance_threshold is not None:
        await repo.update_account(
            conn, existing, {"low_balance_threshold": spec.low_balance_threshold}, now
        )
    if spec.time_zone is not None:
        await set_time_zone(conn, existing, spec.time_zone, now, actor=actor)
    return await get_account(conn, existing, now), created


async def _finish_opening(
    conn: AsyncConnection,
    account_id: str,
    spec: AccountSpec,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> None:
    """Audit the overdraft limit a new account was opened with, and pay its initial grant."""
    if spec.overdraft_limit:
        await audit.record(
            conn,
            actor=actor,
            action="account.overdraft_limit",
            target=account_id,
            before=None,
            after={"overdraft_limit": spec.overdraft_limit},
            now=now,
        )
    if spec.initial_grant:
        initial = service.Grant(
            account_id=account_id,
            amount=spec.initial_grant,
            app=SYSTEM_APP,
            idempotency_key=f"initial:{account_id}",
            reason="initial grant",
        )
        await service.grant(conn, initial, policy, now, actor=actor)


async def _add_aliases(
    conn: AsyncConnection, account_id: str, aliases: tuple[str, ...], policy: Policy, now: datetime
) -> None:
    """Let each alias name the account too, then queue what the observer sends when an
    account is given names."""
    for alias in aliases:
        await add_alias(conn, account_id, alias)
    if aliases and policy.observer is not None:
        row = await repo.get_account_row(conn, account_id)
        balance = 0 if row is None else int(row.balance)
        await statements.queue(
            conn, await policy.observer.after_names(conn, account_id, balance, now)
        )


async def _update_settings(
    conn: AsyncConnection,
    account_id: str,
    spec: AccountSpec,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> None:
    # Locked, so what the overdraft check reads is what the update lands on: a charge that
    # commits meanwhile waits for this transaction, then sees the new limit.
    row = await repo.get_account_row(conn, account_id, lock=True)
    if row is None:  # pragma: no cover - resolved in this transaction
        raise AccountNotFound(account_id)
    changes: dict[str, Any] = {}
    if spec.metadata is not None and spec.metadata != row.metadata:
        changes["metadata"] = spec.metadata
    limit = spec.overdraft_limit
    if limit is not None and limit != row.overdraft_limit:
        held = await live_held(conn, account_id, row.held, now)
        if row.balance - held + limit < 0:
            raise OverdraftInUse(account_id)
        if held != row.held:
            await posting_engine.sweep(conn, [account_id], policy, now)
        changes["overdraft_limit"] = limit
        changes["debt"] = 0  # nothing is below what the account may spend any more
        await audit.record(
            conn,
            actor=actor,
            action="account.overdraft_limit",
            target=account_id,
            before={"overdraft_limit": row.overdraft_limit},
            after={"overdraft_limit": limit},
            now=now,
        )
    if changes:
        await repo.update_account(conn, account_id, changes, now)


async def set_time_zone(
    conn: AsyncConnection, account_id: str, name: str, now: datetime, *, actor: str
) -> bool:
    """Count the account's spend limits in the IANA zone ``name`` from now on (audited,
    with what each moved window carried); False when it already was. A day, week or month
    in progress keeps what it spent and ends at the new zone's next boundary (see
    :func:`creditsd.ledger.limit_zones.rezone`)."""
    zone = check_zone(name)
    row = await _locked_account(conn, account_id)
    before = row.time_zone or "UTC"
    if name == before:
        return False
    carried = await limit_zones.rezone(conn, account_id, ZoneInfo(before), zone, now)
    await repo.update_account(conn, account_id, {"time_zone": None if name == "UTC" else name}, now)
    await audit.record(
        conn,
        actor=actor,
        action="account.time_zone",
        target=account_id,
        before={"time_zone": before},
        after={"time_zone": name, "carried": carried},
        now=now,
    )
    return True


async def set_metadata_key(
    conn: AsyncConnection, account_id: str, key: str, value: str | None, now: datetime
) -> bool:
    """Set one metadata key (``None`` removes it), leaving the other keys as they are.

    False, changing nothing, when the result would break the limits the API holds
    metadata to (so the account still reads and writes back through the API).
    """
    row = await repo.get_account_row(conn, account_id, lock=True)
    if row is None:
        raise AccountNotFound(account_id)
    current: Metadata = row.metadata or {}
    wanted = {name: item for name, item in current.items() if name != key}
    if value is not None:
        wanted[key] = value
    if wanted == current:
        return True
    try:
        check_metadata(wanted)
    except ValueError:
        return False
    await repo.update_account(conn, account_id, {"metadata": wanted or None}, now)
    return True


async def add_alias(conn: AsyncConnection, account_id: str, alias: str) -> None:
    """Let ``alias`` name the account too; refused when it names another."""
    check_account_id(alias)
    taken = not await statements.of(conn).insert_name(conn, alias, account_id)
    if taken and await repo.resolve_name(conn, alias) != account_id:
        raise AliasTaken(alias)


async def set_status(
    conn: AsyncConnection,
    account_id: str,
    status: str,
    now: datetime,
    *,
    actor: str,
    reason: str | None = None,
) -> bool:
    """An operator makes an account active, frozen or closed (audited); False when
    nothing changed.

    Freezing adds the operator's freeze beside any other (a dispute's); making the account
    active lifts every freeze, as the operator decides over them all.
    """
    if status == "frozen":
        return await freeze(conn, account_id, now, holder=OPERATOR, actor=actor, reason=reason)
    row = await _locked_account(conn, account_id)
    lifted = await repo.remove_freezes(conn, account_id, None) if status == "active" else 0
    if row.status == status and not lifted:
        return False
    await _record_status(conn, row, status, now, actor=actor, reason=reason)
    return True


async def freeze(
    conn: AsyncConnection,
    account_id: str,
    now: datetime,
    *,
    holder: str,
    actor: str,
    reason: str | None = None,
) -> bool:
    """Hold the account frozen for ``holder`` (``operator``, ``dispute:<id>``…), audited;
    False when that holder held it frozen already. A closed account stays closed."""
    row = await _locked_account(conn, account_id)
    if not await repo.add_freeze(conn, account_id, holder, reason, now):
        return False
    status = "frozen" if row.status == "active" else row.status
    await _record_status(conn, row, status, now, actor=actor, reason=reason, action="frozen")
    return True


async def lift_freeze(
    conn: AsyncConnection, account_id: str, now: datetime, *, holder: str, actor: str, reason: str
) -> bool:
    """Lift ``holder``'s freeze (audited); the account is active again once no freeze is
    left. False when that holder held none."""
    row = await _locked_account(conn, account_id)
    if not await repo.remove_freezes(conn, account_id, holder):
        return False
    left = (await repo.freezes_of(conn, [account_id])).get(account_id)
    status = "active" if row.status == "frozen" and not left else row.status
    action = None if status == "active" else "freeze_lifted"
    await _record_status(conn, row, status, now, actor=actor, reason=reason, action=action)
    return True


async def _locked_account(conn: AsyncConnection, account_id: str) -> Any:
    """The account's row, locked so that its freezes and status change together."""
    row = await repo.get_account_row(conn, account_id, lock=True)
    if row is None:
        raise AccountNotFound(account_id)
    return row


async def _record_status(
    conn: AsyncConnection,
    row: Any,
    status: str,
    now: datetime,
    *,
    actor: str,
    reason: str | None,
    action: str | None = None,
) -> None:
    """Store the account's status and audit the change (``account.<action or status>``),
    with who holds it frozen after."""
    if status != row.status:
        await repo.update_account(conn, row.id, {"status": status}, now)
    frozen_by = (await repo.freezes_of(conn, [row.id])).get(row.id, [])
    await audit.record(
        conn,
        actor=actor,
        action=f"account.{action or status}",
        target=row.id,
        before={"status": row.status},
        after={"status": status, "reason": reason, "frozen_by": frozen_by},
        now=now,
    )
