"""Adding, listing and removing a wallet's members; setting and reading spend limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.audit import repository as audit
from creditsd.kit import ids
from creditsd.kit.errors import InvalidRequest
from creditsd.kit.pagination import Page, decode_cursor, encode_cursor
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import statements
from creditsd.ledger.errors import AccountNotFound, ProxyKeyNotFound
from creditsd.ledger.limits import MemberNotFound, Tally
from creditsd.ledger.posting import Policy
from creditsd.ledger.windows import PERIODS, Period, check_nested
from creditsd.proxy_keys import repository as proxy_keys_repo
from creditsd.tables import accounts, members, spend_limits

_M = members.c
_L = spend_limits.c


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A limit asked for: at most ``amount`` per ``period``; ``mode`` hard or soft."""

    amount: int
    period: Period
    mode: str = "hard"


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a wallet, with the state of each of its limits."""

    account_id: str
    member_id: str
    display_name: str | None
    limits: list[Tally]
    created_at: datetime
    updated_at: datetime


async def _locked(conn: AsyncConnection, name: str, policy: Policy, now: datetime) -> str:
    """The wallet's id, its row locked (so a change lands between two batches); created
    when the policy allows."""
    account_id: str = await ledger_accounts.resolve_account(conn, name, policy, now)
    if await ledger_repo.get_account_row(conn, account_id, lock=True) is None:
        raise AccountNotFound(name)
    return account_id


async def _existing(conn: AsyncConnection, wallet: str) -> str:
    """The id of the wallet this id or alias names; a read never creates it."""
    account_id = await ledger_repo.resolve_name(conn, wallet)
    if account_id is None:
        raise AccountNotFound(wallet)
    return account_id


async def _zone(conn: AsyncConnection, account_id: str) -> str | None:
    """The IANA time zone the account's limits count their windows in (None: UTC)."""
    query = select(accounts.c.time_zone).where(accounts.c.id == account_id)
    zone: str | None = (await conn.execute(query)).scalar_one_or_none()
    return zone


async def _tallies(
    conn: AsyncConnection, account_id: str, named: Sequence[str], now: datetime
) -> list[Tally]:
    """Every limit on the account in its current window: the wallet's own first, then its
    members', apps' and proxy keys', each subject's by period (day to lifetime)."""
    zone = await _zone(conn, account_id)
    wanted = statements.Wanted.controls([account_id], sorted(named))
    found = await statements.of(conn).read(conn, wanted, now)
    tallies = found.controls.by_account({account_id: zone}, now)[account_id].tallies
    return sorted(tallies, key=_shown_order)


_SCOPES_SHOWN = ("wallet", "member", "app", "key")


def _shown_order(tally: Tally) -> tuple[int, str, int]:
    limit = tally.limit
    return _SCOPES_SHOWN.index(limit.scope), limit.subject, PERIODS.index(limit.period)


async def _mark(conn: AsyncConnection, account_id: str, now: datetime) -> None:
    """Keep the account's ``spend_controls`` flag true exactly while it has members or
    limits (the engine reads them only then)."""
    has = select(
        exists().where(_M.account_id == account_id) | exists().where(_L.account_id == account_id)
    )
    controlled = bool((await conn.execute(has)).scalar())
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.spend_controls != controlled)
        .values(spend_controls=controlled, updated_at=now)
    )


def _check_specs(specs: Sequence[LimitSpec]) -> dict[Period, LimitSpec]:
    """The limits asked, by period: at most one per period, nested (day ≤ week ≤ month ≤
    lifetime)."""
    asked = {spec.period: spec for spec in specs}
    if len(asked) != len(specs):
        raise InvalidRequest("give at most one limit per period", field="limits")
    check_nested({period: spec.amount for period, spec in asked.items()})
    return asked


async def _replace_limits(
    conn: AsyncConnection,
    subject: tuple[str, str, str],
    before: dict[str, Any],
    asked: dict[Period, LimitSpec],
    now: datetime,
) -> None:
    """Write ``asked`` over the subject's stored limits (``before``, by period): one whose
    amount and period stay keeps its row (its mode may change); the rest are replaced."""
    account_id, scope, name = subject
    gone = [
        row.id
        for period, row in before.items()
        if period not in asked or asked[period].amount != row.amount
    ]
    if gone:
        await conn.execute(delete(spend_limits).where(_L.account_id == account_id, _L.id.in_(gone)))
    for period, spec in asked.items():
        kept = before.get(period)
        if kept is None or kept.amount != spec.amount:
            await conn.execute(
                spend_limits.insert().values(
                    account_id=account_id,
                    id=ids.new_id("lim"),
                    scope=scope,
                    subject=name,
                    period=period,
                    amount=spec.amount,
                    mode=spec.mode,
                    since=now,
                    created_at=now,
                )
            )
        elif kept.mode != spec.mode:
            await conn.execute(
                update(spend_limits)
                .where(_L.account_id == account_id, _L.id == kept.id)
                .values(mode=spec.mode)
            )


async def set_limits(
    conn: AsyncConnection,
    account_id: str,
    scope: str,
    subject: str,
    specs: Sequence[LimitSpec],
    now: datetime,
    *,
    actor: str,
) -> None:
    """Make ``specs`` the limits of one subject of a locked account: a limit whose amount
    and period stay keeps its window and spend (its mode may change); a new or changed
    one starts a fresh window now; those not asked again go. Audited when anything
    changed; nested limits must be consistent (day ≤ week ≤ month ≤ lifetime)."""
    asked = _check_specs(specs)
    rows = await conn.execute(
        select(_L.id, _L.period, _L.amount, _L.mode).where(
            _L.account_id == account_id, _L.scope == scope, _L.subject == subject
        )
    )
    before = {row.period: row for row in rows}
    await _replace_limits(conn, (account_id, scope, subject), before, asked, now)
    was = {period: {"amount": row.amount, "mode": row.mode} for period, row in before.items()}
    set_now = {period: {"amount": spec.amount, "mode": spec.mode} for period, spec in asked.items()}
    if was != set_now:
        await audit.record(
            conn,
            actor=actor,
            action="limits.set",
            target="/".join(part for part in (account_id, scope, subject) if part),
            before=dict(sorted(was.items())),
            after=dict(sorted(set_now.items())),
            now=now,
        )
    await _mark(conn, account_id, now)


async def _members(
    conn: AsyncConnection, account_id: str, rows: Sequence[Any], now: datetime
) -> list[Member]:
    """The members of these rows, each with its own limits' state."""
    tallies = await _tallies(conn, account_id, [row.member_id for row in rows], now)
    return _with_limits(account_id, rows, tallies)


def _with_limits(account_id: str, rows: Sequence[Any], tallies: list[Tally]) -> list[Member]:
    """The members of these rows, each with its own of the account's ``tallies``."""
    return [
        Member(
            account_id,
            row.member_id,
            row.display_name,
            [t for t in tallies if (t.limit.scope, t.limit.subject) == ("member", row.member_id)],
            row.created_at,
            row.updated_at,
        )
        for row in rows
    ]


async def require_member(conn: AsyncConnection, account_id: str, member_id: str) -> None:
    """Refuse (404 ``member_not_found``) a member the account does not have."""
    query = select(_M.member_id).where(_M.account_id == account_id, _M.member_id == member_id)
    if (await conn.execute(query)).first() is None:
        raise MemberNotFound(account_id, member_id)


_MEMBER_ROW = select(_M.member_id, _M.display_name, _M.created_at, _M.updated_at)


async def _member(conn: AsyncConnection, account_id: str, member_id: str, now: datetime) -> Member:
    query = _MEMBER_ROW.where(_M.account_id == account_id, _M.member_id == member_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise MemberNotFound(account_id, member_id)
    (member,) = await _members(conn, account_id, [row], now)
    return member


async def put_member(
    conn: AsyncConnection,
    wallet: str,
    member_id: str,
    display_name: str | None,
    specs: Sequence[LimitSpec] | None,
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> tuple[Member, bool]:
    """Add a member to a wallet, or update one (its display name when given; its limits
    when ``specs`` is given, else they stay); the member and whether it is new."""
    account_id = await _locked(conn, wallet, policy, now)
    found = await conn.execute(
        select(_M.display_name).where(_M.account_id == account_id, _M.member_id == member_id)
    )
    known = found.first()
    if known is None:
        await conn.execute(
            members.insert().values(
                account_id=account_id,
                member_id=member_id,
                display_name=display_name,
                created_at=now,
                updated_at=now,
            )
        )
        await audit.record(
            conn,
            actor=actor,
            action="member.added",
            target=f"{account_id}/{member_id}",
            before=None,
            after={"display_name": display_name},
            now=now,
        )
    elif display_name is not None and known.display_name != display_name:
        await conn.execute(
            update(members)
            .where(_M.account_id == account_id, _M.member_id == member_id)
            .values(display_name=display_name, updated_at=now)
        )
    if specs is not None:  # marks the account itself
        await set_limits(conn, account_id, "member", member_id, specs, now, actor=actor)
    else:
        await _mark(conn, account_id, now)
    return await _member(conn, account_id, member_id, now), known is None


async def remove_member(
    conn: AsyncConnection, wallet: str, member_id: str, policy: Policy, now: datetime, *, actor: str
) -> Member:
    """Remove a member and its limits (audited); its open holds still settle."""
    account_id = await _locked(conn, wallet, policy, now)
    member = await _member(conn, account_id, member_id, now)
    await conn.execute(
        delete(spend_limits).where(
            _L.account_id == account_id, _L.scope == "member", _L.subject == member_id
        )
    )
    await conn.execute(
        delete(members).where(_M.account_id == account_id, _M.member_id == member_id)
    )
    await audit.record(
        conn,
        actor=actor,
        action="member.removed",
        target=f"{account_id}/{member_id}",
        before={"display_name": member.display_name},
        after=None,
        now=now,
    )
    await _mark(conn, account_id, now)
    return member


async def list_members(
    conn: AsyncConnection, wallet: str, limit: int, cursor: str | None, now: datetime
) -> Page[Member]:
    """A wallet's members by id, each with its limits' state."""
    account_id = await _existing(conn, wallet)
    after = decode_cursor(cursor)
    query = _MEMBER_ROW.where(_M.account_id == account_id)
    if after is not None:
        query = query.where(_M.member_id > after)
    rows = list(await conn.execute(query.order_by(_M.member_id).limit(limit + 1)))
    page = rows[:limit]
    items = await _members(conn, account_id, page, now)
    last = encode_cursor(page[-1].member_id) if len(rows) > limit else None
    return Page(items, last)


async def put_limits(
    conn: AsyncConnection,
    wallet: str,
    scope: str,
    subject: str,
    specs: Sequence[LimitSpec],
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> list[Tally]:
    """Set the limits of the wallet itself (``scope`` wallet), of an app on it or of a
    proxy key of it; every limit on the wallet afterwards."""
    account_id = await _locked(conn, wallet, policy, now)
    await set_limits(conn, account_id, scope, subject, specs, now, actor=actor)
    return await _tallies(conn, account_id, [], now)


async def put_key_limits(
    conn: AsyncConnection,
    key_id: str,
    specs: Sequence[LimitSpec],
    policy: Policy,
    now: datetime,
    *,
    actor: str,
) -> list[Tally]:
    """Set the period limits of a proxy key (beside the lifetime ``limit`` it was minted
    with); every limit on its account afterwards."""
    key = await proxy_keys_repo.get_key(conn, key_id)
    if key is None:
        raise ProxyKeyNotFound(key_id)
    return await put_limits(conn, key.account_id, "key", key_id, specs, policy, now, actor=actor)


async def limits_of(conn: AsyncConnection, wallet: str, now: datetime) -> list[Tally]:
    """Every limit on a wallet, with its current window's spend and what is held."""
    account_id = await _existing(conn, wallet)
    return await _tallies(conn, account_id, [], now)


@dataclass(frozen=True, slots=True)
class Standing:
    """A member as its own billing page shows it: its limits' state, and the time zone of
    the wallet its windows count in (None: UTC)."""

    member: Member
    time_zone: str | None


async def member_standing(
    conn: AsyncConnection, wallet: str, member_id: str, now: datetime
) -> Standing:
    """One member of a wallet with its limits' state; ``MemberNotFound`` when the wallet
    has no such member (a read never creates the wallet)."""
    account_id = await _existing(conn, wallet)
    member = await _member(conn, account_id, member_id, now)
    return Standing(member, await _zone(conn, account_id))


SPEND_DAYS = 30  # how far back a wallet's spend per member is summed
MEMBERS_SHOWN = 100  # the members a wallet's standing lists (by id)


@dataclass(frozen=True, slots=True)
class MemberSpend:
    """What one member spent from the wallet (charges and captures) since a moment;
    ``member_id`` None for what was spent for no member."""

    member_id: str | None
    display_name: str | None
    amount: int
    current: bool  # still a member of the wallet


@dataclass(frozen=True, slots=True)
class WalletStanding:
    """A wallet as its operator reads it: its first :data:`MEMBERS_SHOWN` members with
    their limits, the other limits on it (its own, its apps', its proxy keys'), and what
    each member spent since ``since``: every member listed, then whoever else spent."""

    members: list[Member]
    more_members: bool
    limits: list[Tally]
    spend: list[MemberSpend]
    since: datetime
    time_zone: str | None


async def wallet_standing(conn: AsyncConnection, wallet: str, now: datetime) -> WalletStanding:
    """A wallet's members and limits, each limit in its current window, and what each
    member spent in the last :data:`SPEND_DAYS` days (most first)."""
    account_id = await _existing(conn, wallet)
    query = _MEMBER_ROW.where(_M.account_id == account_id).order_by(_M.member_id)
    rows = list(await conn.execute(query.limit(MEMBERS_SHOWN + 1)))
    tallies = await _tallies(conn, account_id, [], now)
    listed = _with_limits(account_id, rows[:MEMBERS_SHOWN], tallies)
    since = now - timedelta(days=SPEND_DAYS)
    spent = await ledger_repo.spend_by_member(conn, account_id, since)
    names: dict[str | None, str | None] = {m.member_id: m.display_name for m in listed}
    others = sorted(member_id for member_id in spent if member_id and member_id not in names)
    if others:
        found = await conn.execute(
            select(_M.member_id, _M.display_name).where(
                _M.account_id == account_id, _M.member_id.in_(others)
            )
        )
        names.update((row.member_id, row.display_name) for row in found)
    shown = [*names, *(member_id for member_id in spent if member_id not in names)]
    spend = sorted(
        (MemberSpend(m, names.get(m), spent.get(m, 0), m in names) for m in shown),
        key=lambda row: (row.member_id is None, -row.amount, row.member_id or ""),
    )
    return WalletStanding(
        listed,
        len(rows) > MEMBERS_SHOWN,
        [t for t in tallies if t.limit.scope != "member"],
        spend,
        since,
        await _zone(conn, account_id),
    )
