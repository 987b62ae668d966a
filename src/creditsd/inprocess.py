"""The in-process ``Ledger``: each method is one business operation and an entry point
that hands its work to the database's doorway. A write commits as one transaction (with
group commit, one it may share with other writes); a read may take one per page.

Amounts are integers of minor units (``ledger.money`` converts credits to and from them).
The HTTP API and the CLI call these methods for the ledger's operations; the other
domains' routes and commands hand their work to ``ledger.database`` themselves.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import partial
from types import TracebackType
from typing import Self, TypeVar

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from creditsd import migrations
from creditsd.config import ConfigError, Settings
from creditsd.holds import service as holds
from creditsd.integrity import service as integrity
from creditsd.kit import db
from creditsd.kit.errors import CreditsError, InvalidAmount, InvalidRequest
from creditsd.kit.idempotency import resolve_key
from creditsd.kit.money import INT64_MAX, Money
from creditsd.kit.pagination import MAX_LIMIT, Page, decode_cursor, encode_cursor
from creditsd.kit.rows import insert_or_skip
from creditsd.ledger import accounts as ledger_accounts
from creditsd.ledger import lot_repository as lot_repo
from creditsd.ledger import posting as posting_engine
from creditsd.ledger import repository as ledger_repo
from creditsd.ledger import service as ledger_service
from creditsd.ledger import verification as ledger_verification
from creditsd.ledger.batching import GroupCommit, Submitted
from creditsd.ledger.commands import CaptureHold, ExtendHold, OpenHold, ReleaseHold
from creditsd.ledger.errors import AccountNotFound, InsufficientCredits
from creditsd.ledger.lots import LotSpec
from creditsd.ledger.models import (
    Account,
    DaySpend,
    Expiry,
    History,
    Hold,
    Metadata,
    Transfer,
    Verification,
)
from creditsd.ledger.runway import Runway
from creditsd.ledger.spending import SpendingMemo
from creditsd.migrations import check_current
from creditsd.price_settings import PricingSettings
from creditsd.pricing import service as pricing_service
from creditsd.pricing.catalog import Catalog, Price, Use
from creditsd.pricing.service import PriceBook
from creditsd.tables import ACCOUNT_STATUSES, LOT_SOURCES, ledger_meta
from creditsd.usage import service as usage
from creditsd.usage.models import UsageEvent, UsageResult
from creditsd.webhooks.outbox import Outbox

T = TypeVar("T")
Clock = Callable[[], datetime]

log = logging.getLogger("creditsd")

LOCAL_APP = "local"

CHARGES = Counter(
    "creditsd_charges",
    "Charges written by this process (replays not counted), by operation: charge or usage.",
    ["operation"],
)
INSUFFICIENT_CREDITS = Counter(
    "creditsd_insufficient_credits",
    "Charges, usage events, holds and captures this process refused for insufficient "
    "credits, by operation.",
    ["operation"],
)


@contextmanager
def _refusals_counted(operation: str) -> Iterator[None]:
    """Count an ``InsufficientCredits`` raised in the block (and let it go on)."""
    try:
        yield
    except InsufficientCredits:
        INSUFFICIENT_CREDITS.labels(operation).inc()
        raise


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _units(amount: int, field: str = "amount", *, allow_zero: bool = False) -> int:
    """Check an in-process amount (or duration): a positive int within 64 bits."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(field, "must be an int")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidAmount(field, "must be greater than zero")
    if amount > INT64_MAX:
        raise InvalidAmount(field, "is out of range")
    return amount


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


class Ledger:
    """An exact, double-entry credits ledger on SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine, settings: Settings, *, clock: Clock = _utcnow) -> None:
        self.engine = engine
        self.database = db.Database(engine, self.now)
        self.settings = settings
        self.money: Money = settings.money
        self._clock = clock
        self.prices = PriceBook(settings.pricing)
        self.outbox = Outbox(settings, self.prices)
        self._spending = SpendingMemo()
        self.policy = ledger_service.Policy(
            auto_create=settings.accounts.auto_create,
            signup_grant=settings.signup_grant_units,
            observer=self.outbox,
            money=self.money,
            limit_warnings=tuple(settings.webhooks.limit_warning_percentages),
        )
        self._group = (
            GroupCommit(
                self.database,
                self.policy,
                max_batch=settings.ledger.group_commit_batch,
                lanes=settings.ledger.group_commit_lanes,
            )
            if settings.ledger.group_commit
            else None
        )

    @classmethod
    async def connect(
        cls,
        settings: Settings,
        *,
        migrate: bool = False,
        publish_pricing: bool = False,
        clock: Clock = _utcnow,
    ) -> Self:
        """Open the configured database (migrating it first if asked) and check its scale.

        ``publish_pricing`` makes the configured catalog the current one (as
        ``creditsd serve`` does on start) when the configuration has a ``[pricing]``
        section; otherwise the newest published one serves, and the built-in catalog only
        while none has ever been published.
        """
        if migrate:
            await migrations.migrate(settings.database)
        engine = db.create_engine(settings.database)
        instance = cls(engine, settings, clock=clock)
        try:
            await check_current(engine)
            await instance._check_scale()
            if publish_pricing and settings.configured_pricing is not None:
                await instance.publish_pricing(settings.configured_pricing, actor="creditsd")
        except BaseException:
            await engine.dispose()
            raise
        return instance

    async def _check_scale(self) -> None:
        """Refuse to run a database at another scale than the one it was started with."""
        scale = str(self.money.scale)

        async def check(conn: AsyncConnection, _now: datetime) -> str | None:
            stored = (
                await conn.execute(select(ledger_meta.c.value).where(ledger_meta.c.key == "scale"))
            ).scalar_one_or_none()
            if stored is None:
                insert = insert_or_skip(conn)
                await conn.execute(
                    insert(ledger_meta).values(key="scale", value=scale).on_conflict_do_nothing()
                )
            return stored

        stored = await self.database.write(check)
        if stored is not None and stored != scale:
            raise ConfigError(
                f"ledger.scale is {scale} but this database keeps amounts at scale {stored}"
            )

    async def close(self) -> None:
        """Release every database connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, *_exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.close()

    def now(self) -> datetime:
        """The ledger's clock (injectable, so tests can move time)."""
        return self._clock()

    # Accounts

    async def open_account(
        self,
        account_id: str,
        *,
        initial_grant: int = 0,
        overdraft_limit: int | None = None,
        aliases: tuple[str, ...] = (),
        metadata: Metadata | None = None,
        status: str | None = None,
        low_balance_threshold: int | None = None,
        time_zone: str | None = None,
        actor: str = LOCAL_APP,
    ) -> tuple[Account, bool]:
        """Create the account if absent (True) or apply the given settings to it (False).

        ``status`` freezes, closes or reactivates it (audited). ``time_zone`` (an IANA
        name; ``"UTC"`` sets it back) is the zone its spend limits' days, weeks and
        months are of (audited); None leaves it as it is.
        """
        if status is not None and status not in ACCOUNT_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(ACCOUNT_STATUSES)}")
        spec = ledger_accounts.AccountSpec(
            initial_grant=_units(initial_grant, "initial_grant", allow_zero=True),
            overdraft_limit=None
            if overdraft_limit is None
            else _units(overdraft_limit, "overdraft_limit", allow_zero=True),
            aliases=aliases,
            metadata=metadata,
            status=status,
            low_balance_threshold=None
            if low_balance_threshold is None
            else _units(low_balance_threshold, "low_balance_threshold", allow_zero=True),
            time_zone=time_zone,
        )
        return await self.database.write(
            lambda conn, now: ledger_accounts.open_account(
                conn, account_id, spec, self.policy, now, actor=actor
            )
        )

    async def set_status(
        self, account_id: str, status: str, *, reason: str | None = None, actor: str = LOCAL_APP
    ) -> bool:
        """Make an account active, frozen or closed (audited with ``reason``); False when
        nothing changed. Freezing adds the operator's freeze beside any dispute's; making
        it active lifts every freeze."""
        if status not in ACCOUNT_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(ACCOUNT_STATUSES)}")

        async def work(conn: AsyncConnection, now: datetime) -> bool:
            found = await ledger_accounts.resolve_account(
                conn, account_id, self.policy, now, create=False
            )
            return await ledger_accounts.set_status(
                conn, found, status, now, actor=actor, reason=reason
            )

        return await self.database.write(work)

    async def _on_account(
        self,
        name: str,
        work: Callable[[AsyncConnection, str, datetime], Awaitable[T]],
        unopened: Callable[[str], T] | None = None,
    ) -> T:
        """Read about the account ``name`` (an id or alias) names, in a read transaction.

        Reads never create: an account that does not exist yet is ``unopened(name)`` when
        ``auto_create`` would create it on its first write, and otherwise not found.
        """

        async def on(conn: AsyncConnection, now: datetime) -> T:
            account_id = await ledger_accounts.resolve_account(
                conn, name, self.policy, now, create=False
            )
            return await work(conn, account_id, now)

        try:
            return await self.database.read(on)
        except AccountNotFound:
            if unopened is None or not self.policy.auto_create:
                raise
        return unopened(name)

    async def get_account(self, account_id: str) -> Account:
        """An account by id or alias; one that does not exist yet is shown as its first
        write will create it (``created_at`` None) when ``auto_create`` is on.

        Credits past their expiry are shown gone, as the lapse the sweeper (or the next
        write) records will leave the account: it is worked out in a transaction that is
        rolled back, so the read still writes nothing.
        """
        account = await self._on_account(
            account_id,
            ledger_accounts.get_account,
            partial(ledger_accounts.unopened_account, policy=self.policy),
        )
        if account.lots_expire_at is None or account.lots_expire_at > self.now():
            return account

        async def lapsed(conn: AsyncConnection, now: datetime) -> Account:
            await _expire_lots(conn, now, policy=self.policy, account_id=account.id)
            return await ledger_accounts.get_account(conn, account.id, now)

        return await self.database.write(lapsed, dry_run=True)

    async def list_accounts(
        self, *, limit: int = 50, cursor: str | None = None, search: str | None = None
    ) -> Page[Account]:
        """Customer accounts in id order."""
        limit = _limit(limit)
        after = decode_cursor(cursor)

        async def work(conn: AsyncConnection, now: datetime) -> Page[Account]:
            accounts, more = await ledger_accounts.list_accounts(conn, limit, after, search, now)
            return Page(accounts, encode_cursor(accounts[-1].id) if more else None)

        return await self.database.read(work)

    # Pricing

    async def catalog(self) -> Catalog:
        """The catalog version prices come from now; before any is published, the
        configured one as the first priced write will publish it (a read writes nothing)."""
        cached = self.prices.fresh()
        if cached is not None:
            return cached
        return await self.database.read(partial(self.prices.current, publish_first=False))

    async def publish_pricing(
        self, pricing: PricingSettings, *, actor: str = LOCAL_APP
    ) -> tuple[Catalog, bool]:
        """Make ``pricing`` the current catalog; True when that made a new version (audited)."""
        catalog, created = await self.database.write(
            lambda conn, now: pricing_service.publish(conn, pricing, now, actor=actor)
        )
        self.prices.remember(catalog)
        return catalog, created

    async def quote(self, use: Use) -> Price:
        """What ``use`` costs now, without charging anything."""
        return (await self.catalog()).price(use, self.money)

    async def _amount(
        self, amount: int | None, use: Use | None
    ) -> tuple[int, Metadata | None, Metadata | None]:
        """Exactly one of an amount in minor units or a use the catalog prices.

        Returns the amount, the price's breakdown and what was asked (the use, which
        idempotency fingerprints in place of the amount); both None for a plain amount.
        """
        if use is None and amount is not None:
            return _units(amount), None, None
        if use is None or amount is not None:
            raise InvalidRequest("give either an amount or a priced use (feature or usage)")
        catalog = self.prices.fresh()
        if catalog is None:  # a priced write publishes the configured catalog if none is
            catalog = await self.database.write(self.prices.current)
        price = catalog.price(use, self.money)
        return price.amount, price.breakdown, use.request()

    def _lifetime(self, expires_in: int | None) -> int:
        """A hold's lifetime in seconds: the one asked (at most ``[holds] max_expires_in``)
        or ``[holds] default_expires_in``."""
        holds_settings = self.settings.holds
        seconds = holds_settings.default_expires_in if expires_in is None else expires_in
        return holds.check_expiry(_units(seconds, "expires_in"), holds_settings.max_expires_in)

    # Movements

    async def grant(
        self,
        account_id: str,
        amount: int,
        *,
        source: str = "promotion",
        expires_at: datetime | None = None,
        priority: int | None = None,
        reason: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
        app: str = LOCAL_APP,
        actor: str = LOCAL_APP,
    ) -> Transfer:
        """Give an account credits (audited), in a lot of ``source`` lapsing at ``expires_at``."""
        amount = _units(amount)
        key = resolve_key(idempotency_key)
        if source not in LOT_SOURCES:
            raise InvalidRequest(f"source must be one of {', '.join(LOT_SOURCES)}", field="source")
        request = ledger_service.Grant(
            account_id=account_id,
            amount=amount,
            app=app,
            idempotency_key=key,
            reason=reason,
            metadata=metadata,
            lot=LotSpec(source, expires_at, priority),
        )

        async def grant(conn: AsyncConnection, now: datetime) -> Transfer:
            transfer = await ledger_service.grant(conn, request, self.policy, now, actor=actor)
            # Checked once the key is looked up, so that a retry after the expiry answers
            # the grant it made; a new one is undone with its transaction.
            if not transfer.replayed and expires_at is not None and expires_at <= now:
                raise InvalidRequest("expires_at must be in the future", field="expires_at")
            return transfer

        return await self.database.write(grant)

    async def adjust(
        self,
        account_id: str,
        change: int,
        *,
        reason: str,
        idempotency_key: str | None = None,
        app: str = LOCAL_APP,
        actor: str = LOCAL_APP,
    ) -> Transfer:
        """Correct an account by ``change`` minor units: credit when positive, debit when
        negative (audited, ``reason`` kept on the transfer)."""
        if isinstance(change, bool) or not isinstance(change, int) or change == 0:
            raise InvalidAmount("change", "must be a non-zero int")
        _units(abs(change), "change")
        if not reason.strip():
            raise InvalidRequest("an adjustment needs a reason", field="reason")
        request = ledger_service.Adjustment(
            account_id=account_id,
            change=change,
            app=app,
            idempotency_key=resolve_key(idempotency_key),
            reason=reason,
        )
        return await self.database.write(
            lambda conn, now: ledger_service.adjust(conn, request, self.policy, now, actor=actor)
        )

    async def charge(
        self,
        account_id: str,
        amount: int | None = None,
        *,
        use: Use | None = None,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
        app: str = LOCAL_APP,
        member: str | None = None,
    ) -> Transfer:
        """Spend ``amount``, or what the catalog says ``use`` costs (stamped on the transfer);
        ``member``: the wallet's member it is for, counted against its limits.

        Raises ``InsufficientCredits`` when the account cannot afford it, ``LimitReached``
        past a hard spend limit.
        """
        units, pricing, asked = await self._amount(amount, use)
        charge = ledger_service.Charge(
            account_id=account_id,
            amount=units,
            app=app,
            idempotency_key=resolve_key(idempotency_key),
            description=description,
            metadata=metadata,
            pricing=pricing,
            use=asked,
            fresh_key=idempotency_key is None,
            member=member,
        ).movement()
        with _refusals_counted("charge"):
            transfer = await self._submit(charge)
        assert isinstance(transfer, Transfer)
        if not transfer.replayed:
            CHARGES.labels("charge").inc()
        return transfer

    async def _submit(
        self, command: Submitted, *, patient: bool = False
    ) -> posting_engine.EntryOutcome:
        """Write one command of the posting engine: in a group's batch when group commit
        is on (``patient``: nobody is waiting for it, see ``GroupCommit.submit``). As in a
        group's batch, a refusal is raised once the transaction has committed (a first
        touch that created the account stays)."""
        if self._group is not None:
            return await self._group.submit(command, patient=patient)
        (outcome,) = await self.database.write(
            lambda conn, now: posting_engine.post(conn, [command], self.policy, now)
        )
        if isinstance(outcome, CreditsError):
            raise outcome
        return outcome

    async def transactions(
        self, account_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> History:
        """An account's transfers, newest first."""
        limit = _limit(limit)
        before = decode_cursor(cursor)

        async def history(conn: AsyncConnection, found: str, _now: datetime) -> History:
            items, last = await ledger_service.account_transactions(conn, found, limit, before)
            return History(found, items, None if last is None else encode_cursor(last))

        return await self._on_account(account_id, history, lambda name: History(name, [], None))

    async def daily_spend(self, account_id: str, first: date) -> list[DaySpend]:
        """What an account spent per UTC day and item (model, feature or meter), from the
        day ``first`` on; days that are over are read once (see ``ledger.spending``)."""

        async def work(conn: AsyncConnection, found: str, now: datetime) -> list[DaySpend]:
            return await self._spending.days(
                found, first, now, lambda since: ledger_repo.daily_spend(conn, found, since)
            )

        return await self._on_account(account_id, work, lambda _name: [])

    async def runway(self, account_id: str) -> Runway:
        """How long an account's credits last at its recent burn (see ``ledger.runway``)."""
        return await self._on_account(account_id, ledger_accounts.account_runway)

    async def refresh_runway_burns(self) -> int:
        """Store each account's burn per day, which the runway warnings of every later
        write read (the worker's every few minutes); how many changed."""
        return await self.database.write(ledger_accounts.refresh_runway_burns)

    async def expiring_credits(self, account_id: str, *, limit: int = 10) -> list[Expiry]:
        """An account's credits that will lapse unless spent first, soonest first."""
        return await self._on_account(
            account_id,
            lambda conn, found, now: lot_repo.expiring(conn, found, now, limit),
            lambda _name: [],
        )

    async def get_transfer(self, transfer_id: str) -> Transfer:
        """One transfer by id."""
        return await self.database.read(
            lambda conn, _now: ledger_service.get_transfer(conn, transfer_id)
        )

    # Holds

    async def open_hold(
        self,
        account_id: str,
        amount: int | None = None,
        *,
        use: Use | None = None,
        expires_in: int | None = None,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
        app: str = LOCAL_APP,
        proxy_key_id: str | None = None,
        member: str | None = None,
    ) -> Hold:
        """Reserve ``amount``, or the estimate of ``use``, for ``expires_in`` seconds;
        ``proxy_key_id`` names the proxy key that pays, within its spend limit; ``member``
        the wallet's member it is for, within its limits."""
        amount, pricing, asked = await self._amount(amount, use)
        reservation = OpenHold(
            account_id=account_id,
            amount=amount,
            expires_in=self._lifetime(expires_in),
            app=app,
            idempotency_key=resolve_key(idempotency_key),
            description=description,
            metadata=metadata,
            use=asked,
            proxy_key_id=proxy_key_id,
            member=member,
            pricing=pricing,
            fresh_key=idempotency_key is None,
        )
        with _refusals_counted("hold"):
            opened = await self._submit(reservation)
        assert isinstance(opened, Hold)
        return opened

    async def capture_hold(
        self,
        hold_id: str,
        amount: int | None = None,
        *,
        use: Use | None = None,
        final: bool = True,
        description: str | None = None,
        metadata: Metadata | None = None,
        idempotency_key: str | None = None,
        app: str = LOCAL_APP,
        finished_at: datetime | None = None,
        patient: bool = False,
        served: bool = False,
    ) -> tuple[Hold, Transfer]:
        """Charge ``amount``, or what ``use`` actually cost, against a hold.

        A final capture gives back whatever the hold still reserves; past the hold it
        follows ``[holds] overrun``, but for work ``served`` already, its answer sent (a
        proxied call): nobody is left to hear a 402, so it charges what the account and
        its limits allow and records the rest as uncollected. Without an idempotency key
        a final capture uses one derived from the hold, so settling the same hold twice
        never charges twice.
        ``finished_at``: when the work it pays for ended, for a capture a database outage
        delayed (a hold still open then is captured even if it expired since);
        ``patient``: nobody is waiting for the answer, so it may share a batch to come.
        """
        amount, pricing, asked = await self._amount(amount, use)
        key = resolve_key(idempotency_key) if idempotency_key or not final else f"capture:{hold_id}"
        capture = CaptureHold(
            hold_id=hold_id,
            amount=amount,
            app=app,
            idempotency_key=key,
            final=final,
            overrun="cap" if served else self.settings.holds.overrun,
            description=description,
            metadata=metadata,
            use=asked,
            pricing=pricing,
            finished_at=finished_at,
        )
        with _refusals_counted("capture"):
            settled = await self._submit(capture, patient=patient)
        assert isinstance(settled, posting_engine.Settled)
        return settled.hold, settled.transfer

    # Usage

    async def record_usage(
        self, events: list[UsageEvent], *, app: str = LOCAL_APP
    ) -> list[UsageResult]:
        """Price and charge a batch of usage events, each once by its id; answers in order."""

        async def work(conn: AsyncConnection, now: datetime) -> list[UsageResult]:
            catalog = await self.prices.current(conn, now)
            return await usage.record(conn, events, catalog, self.money, self.policy, now, app=app)

        results = await self.database.write(work)
        CHARGES.labels("usage").inc(sum(result.status == "charged" for result in results))
        INSUFFICIENT_CREDITS.labels("usage").inc(
            sum(result.status == "insufficient_credits" for result in results)
        )
        return results

    async def release_hold(self, hold_id: str, *, patient: bool = False) -> Hold:
        """Give back what a hold reserves; a released or expired hold is left as it is
        (``patient``: see :meth:`capture_hold`)."""
        released = await self._submit(ReleaseHold(hold_id), patient=patient)
        assert isinstance(released, Hold)
        return released

    async def extend_hold(self, hold_id: str, expires_in: int | None = None) -> Hold:
        """Push an open hold's expiry to ``expires_in`` seconds from now."""
        extended = await self._submit(ExtendHold(hold_id, self._lifetime(expires_in)))
        assert isinstance(extended, Hold)
        return extended

    async def get_hold(self, hold_id: str) -> Hold:
        """One hold by id."""
        return await self.database.read(lambda conn, _now: holds.get_hold(conn, hold_id))

    async def expire_holds(self) -> int:
        """Close holds past their expiry, lapsing those accounts' due lots too (what the
        timer in ``creditsd serve`` calls); how many holds it closed."""
        return await self.database.write(partial(holds.expire_due, policy=self.policy))

    async def expire_lots(self, batch: int = 200) -> int:
        """Move what is left in lots past their expiry to ``@expired``, one account per
        transaction (what the timer in ``creditsd serve`` calls); how many lots lapsed.

        An account the ledger refuses to lapse is logged and left for the next sweep; the
        others go on. A database failure stops the sweep (every account would fail alike).
        """
        due = await self.database.read(lambda conn, now: lot_repo.due_accounts(conn, now, batch))
        lapsed = 0
        for owner in due:
            try:
                lapsed += await self.database.write(
                    partial(_expire_lots, policy=self.policy, account_id=owner)
                )
            except CreditsError as refused:
                log.error("the lots of %s could not lapse: %s", owner, refused.code)
        return lapsed

    # Verification

    async def verify_account(self, account_id: str) -> Verification:
        """Check one account's stored figures against its history."""

        async def verify(conn: AsyncConnection, found: str, _now: datetime) -> Verification:
            (verification,) = await ledger_verification.verify_accounts(conn, [found])
            return verification

        return await self._on_account(account_id, verify)

    async def rebuild_account(self, account_id: str, *, actor: str = LOCAL_APP) -> Verification:
        """Reset one account's stored figures from its history if they drifted (audited),
        closing the drifts reconciliation recorded of it.

        Returns the verification made before the rebuild.
        """

        async def work(conn: AsyncConnection, now: datetime) -> Verification:
            name = await ledger_accounts.resolve_account(
                conn, account_id, self.policy, now, create=False
            )
            verification = await ledger_verification.rebuild_account(conn, name, now, actor=actor)
            await integrity.resolve_account_drifts(conn, name, now)
            return verification

        return await self.database.write(work)

    async def verify_all(self, page_size: int = 500) -> AsyncIterator[list[Verification]]:
        """Every customer account verified, a page at a time."""
        after: str | None = None
        while page := await self.database.read(
            partial(_verification_page, after=after, size=page_size)
        ):
            yield page
            after = page[-1].account_id

    async def export_transfers(
        self, since: datetime | None, until: datetime | None, page_size: int = 1000
    ) -> AsyncIterator[list[Transfer]]:
        """Transfers created in ``[since, until)``, oldest first, a page at a time."""
        after: str | None = None
        while page := await self.database.read(
            partial(_transfer_page, since=since, until=until, after=after, size=page_size)
        ):
            yield page
            after = page[-1].id

    async def count_accounts(self) -> int:
        """How many customer accounts exist."""
        return await self.database.read(lambda conn, _now: ledger_repo.count_customers(conn))

    async def ledger_total(self) -> int:
        """Stored customer balances plus derived system balances; zero when sound."""
        return await self.database.read(lambda conn, _now: ledger_verification.ledger_total(conn))


async def _expire_lots(
    conn: AsyncConnection, now: datetime, *, policy: ledger_service.Policy, account_id: str
) -> int:
    (swept,) = await posting_engine.sweep(conn, [account_id], policy, now)
    return swept.lapsed_lots


async def _verification_page(
    conn: AsyncConnection, _now: datetime, *, after: str | None, size: int
) -> list[Verification]:
    return await ledger_verification.verify_page(conn, after, size)


async def _transfer_page(
    conn: AsyncConnection,
    _now: datetime,
    *,
    since: datetime | None,
    until: datetime | None,
    after: str | None,
    size: int,
) -> list[Transfer]:
    return await ledger_repo.transfers_between(conn, since, until, after, size)
