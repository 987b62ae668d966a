"""The posting engine: every credit movement is written here, a batch at a time.

A batch is a list of commands (:mod:`creditsd.ledger.commands`): transfers
(:class:`Movement`), and the two-phase transfers that holds are (as TigerBeetle models
them): opening one (:class:`OpenHold`, pending), capturing what it cost
(:class:`CaptureHold`, whole or in slices, posted), releasing it (:class:`ReleaseHold`),
pushing its expiry (:class:`ExtendHold`); and tidy-ups of an account (:class:`Sweep`). A
single charge is a batch of one. Each command becomes the engine's entry, its fingerprint
taken (:func:`_entry`, the one place). :func:`post` writes a batch inside
its caller's transaction, in this order:

1. lock the customer accounts the batch names (ids, aliases, or the accounts of the holds
   it names), in id order, creating unknown ones when the policy allows (each with its
   sign-up grant). Holds and the proxy keys that pay for them are only ever changed by a
   batch that holds their account's lock: one lock order, accounts then their holds;
2. close the holds of those accounts that expired (the one place expiry is decided for a
   write: ``expires_at <= now``), load the holds and proxy keys the batch names, and lapse
   the accounts' lots past expiry;
3. claim the idempotency keys: a replay answers its stored result, a key reused with
   another request is ``409 idempotency_conflict`` (a key its entry calls fresh is not
   looked up). Nothing has moved yet, so nothing is ever undone;
4. apply each entry in order to the locked figures, in Python: the guards (what the
   account may spend, its status, the 64-bit range, a proxy key's limit, a hold's state)
   refuse an entry alone, never its batch-mates; debits spend lots in order, credits
   fill new ones; what the settled holds let go of lapses;
5. write it all set-based: transfers and new holds (their unique keys are the claims), the
   holds and keys that changed, one update per account, lots, lot spends, then the
   observer's outbox rows.

The database keeps its own rules underneath (``CHECK`` on every figure, unique keys),
so a bug here fails the transaction rather than the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.kit import ids
from creditsd.kit.errors import CreditsError
from creditsd.kit.idempotency import fingerprint_of
from creditsd.kit.money import INT64_MAX, INT64_MIN, Money
from creditsd.ledger import statements
from creditsd.ledger.commands import (
    CaptureHold,
    Command,
    ExtendHold,
    Movement,
    OpenHold,
    ReleaseHold,
    Sweep,
)
from creditsd.ledger.errors import (
    AccountNotFound,
    AliasTaken,
    BalanceLimit,
    HoldExceeded,
    HoldNotFound,
    HoldNotOpen,
    IdempotencyConflict,
    InsufficientCredits,
    KeyLimitReached,
    ProxyKeyExpired,
    ProxyKeyNotFound,
    ProxyKeyRevoked,
    WrongAccount,
    not_active,
)
from creditsd.ledger.limits import (
    SPEND_KINDS,
    AccountLimits,
    LimitReached,
    LimitWarning,
    MemberNotFound,
    Spender,
    Tally,
)
from creditsd.ledger.lots import LotSpec, default_spec
from creditsd.ledger.models import (
    EXPIRED,
    REVENUE,
    SIGNUP,
    SYSTEM_APP,
    ExpiredHold,
    Hold,
    LotPart,
    Metadata,
    Transfer,
    available,
    debt_after,
    is_system,
)
from creditsd.ledger.runway import (
    ALLOWANCE_SOURCE,
    RunwayWarning,
    at_burn,
    available_without_allowance,
    next_warning,
)
from creditsd.ledger.statements import Message

T = TypeVar("T")


class Observer(Protocol):
    """Hears of every ledger change before it is written (the outbox); the messages it
    answers are written with the change, in its statement."""

    async def after_transfers(
        self, conn: AsyncConnection, transfers: list[Transfer], now: datetime
    ) -> list[Message]:
        """The messages these transfers send."""

    async def after_holds_expired(
        self, conn: AsyncConnection, expired: list[ExpiredHold], now: datetime
    ) -> list[Message]:
        """The messages these expired holds send."""

    async def after_names(
        self, conn: AsyncConnection, account_id: str, balance: int, now: datetime
    ) -> list[Message]:
        """The messages an account sends when it is given names (aliases)."""

    async def after_limit_warnings(
        self, conn: AsyncConnection, warnings: list[LimitWarning], now: datetime
    ) -> list[Message]:
        """The messages these spend limits' warnings send."""

    async def after_runway_warnings(
        self, conn: AsyncConnection, warnings: list[RunwayWarning], now: datetime
    ) -> list[Message]:
        """The messages these runway warnings send."""

    async def after_event(
        self,
        conn: AsyncConnection,
        event_type: str,
        account_id: str | None,
        data: dict[str, Any],
        now: datetime,
    ) -> list[Message]:
        """The messages one event of a domain's own sends (an auto top-up's outcome)."""

    async def after_balances(
        self, conn: AsyncConnection, available: dict[str, int], short: set[str], now: datetime
    ) -> list[Message]:
        """What follows from the ``available`` credits of the accounts a batch took below
        their armed auto top-up's threshold (``accounts.auto_topup_below``) or refused for
        insufficient credits (``short``): the attempt queued in the batch's transaction."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Deployment rules the engine follows."""

    auto_create: bool = True
    signup_grant: int = 0
    observer: Observer | None = None
    money: Money = field(default_factory=Money)  # the scale settlements are recorded at
    limit_warnings: tuple[int, ...] = (80, 100)  # percentages of a limit that send a warning


@dataclass(frozen=True, slots=True)
class _Posting:
    """A transfer as the engine writes it: a :class:`Movement`, a hold's capture, or a
    lot's lapse. Either side may be an alias; the transfer names the accounts they
    resolve to."""

    kind: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    app: str
    idempotency_key: str
    fingerprint: str
    description: str | None = None
    metadata: Metadata | None = None
    hold_id: str | None = None
    released_held: int = 0  # what the debit side stops holding (a hold being captured)
    pricing: Metadata | None = None  # how a priced amount was computed
    lot: LotSpec | None = None  # the lot a credit to a customer fills (else the kind's default)
    first_lot: str | None = None  # the lot a debit spends first (its refund, its expiry)
    system: bool = False  # creditsd's own debit: goes on whatever the account's status
    forced: bool = False  # taken even past what the account can spend (the rest is debt)
    proxy_key_id: str | None = None  # the proxy key a capture pays for (its hold's)
    member: str | None = None  # the wallet's member it is spent for
    fresh_key: bool = False  # nothing is stored under the key: see Movement.fresh_key


@dataclass(frozen=True, slots=True)
class _Reservation:
    """A hold to open: ``hold.amount`` of the account's available credits set aside."""

    hold: Hold  # its account_id may be an alias
    fingerprint: str
    fresh_key: bool


@dataclass(frozen=True, slots=True)
class _Capture:
    """A :class:`CaptureHold` with its fingerprint."""

    command: CaptureHold
    fingerprint: str

    @property
    def hold_id(self) -> str:
        return self.command.hold_id


@dataclass(slots=True)
class Swept:
    """What a sweep of one account did."""

    expired_holds: list[ExpiredHold]
    lapsed_lots: int


@dataclass(frozen=True, slots=True)
class Settled:
    """A capture's outcome: the hold as it is now and the transfer that charged it."""

    hold: Hold
    transfer: Transfer


_HoldEntry = _Capture | ReleaseHold | ExtendHold
_Entry = _Posting | _Reservation | _HoldEntry | Sweep
EntryOutcome = Transfer | Hold | Settled | Swept | None | CreditsError


def _posting(movement: Movement) -> _Posting:
    return _Posting(
        kind=movement.kind,
        debit_account_id=movement.debit_account_id,
        credit_account_id=movement.credit_account_id,
        amount=movement.amount,
        app=movement.app,
        idempotency_key=movement.idempotency_key,
        fingerprint=fingerprint_of(movement),
        description=movement.description,
        metadata=movement.metadata,
        pricing=movement.pricing,
        lot=movement.lot,
        first_lot=movement.first_lot,
        system=movement.system,
        forced=movement.forced,
        member=movement.member,
        fresh_key=movement.fresh_key,
    )


def _entry(command: Command, now: datetime) -> _Entry:
    """The engine's entry for a command: where every write's fingerprint is taken."""
    if isinstance(command, Movement):
        return _posting(command)
    if isinstance(command, OpenHold):
        hold = Hold(
            id=ids.new_id("hold"),
            account_id=command.account_id,
            amount=command.amount,
            captured=0,
            status="open",
            expires_at=now + timedelta(seconds=command.expires_in),
            app=command.app,
            idempotency_key=command.idempotency_key,
            description=command.description,
            metadata=command.metadata,
            created_at=now,
            updated_at=now,
            pricing=command.pricing,
            proxy_key_id=command.proxy_key_id,
            member_id=command.member,
        )
        return _Reservation(hold, fingerprint_of(command), command.fresh_key)
    if isinstance(command, CaptureHold):
        return _Capture(command, fingerprint_of(command))
    return command


# The entry points


async def post(
    conn: AsyncConnection, commands: Sequence[Command], policy: Policy, now: datetime
) -> list[EntryOutcome]:
    """Write a batch; each command's outcome (or the error that refused it alone), in order."""
    return await _Batch(conn, policy, now).run([_entry(command, now) for command in commands])


async def _one(
    conn: AsyncConnection, command: Command, policy: Policy, now: datetime
) -> EntryOutcome:
    """A batch of one: its outcome, or its refusal raised."""
    (outcome,) = await post(conn, [command], policy, now)
    if isinstance(outcome, CreditsError):
        raise outcome
    return outcome


async def transfer(
    conn: AsyncConnection, movement: Movement, policy: Policy, now: datetime
) -> Transfer:
    """Write one transfer exactly once (a replay answers the first)."""
    made = await _one(conn, movement, policy, now)
    assert isinstance(made, Transfer)
    return made


async def sweep(
    conn: AsyncConnection, account_ids: Sequence[str], policy: Policy, now: datetime
) -> list[Swept]:
    """Close expired holds and lapse due lots on each account."""
    outcomes = await post(conn, [Sweep(account_id) for account_id in account_ids], policy, now)
    return [outcome for outcome in outcomes if isinstance(outcome, Swept)]


async def open_customer(
    conn: AsyncConnection,
    account_id: str,
    policy: Policy,
    now: datetime,
    *,
    overdraft_limit: int = 0,
    metadata: Metadata | None = None,
) -> bool:
    """Create a customer account with its sign-up grant; False if it already existed.

    Only the transaction that inserts the account posts the grant, and the grant's key is
    the account's id, so however an account first appears it is granted exactly once.
    """
    sql = statements.of(conn)
    if not await sql.insert_account(conn, account_id, overdraft_limit, metadata, now):
        return False
    if not await sql.insert_name(conn, account_id, account_id):
        raise AliasTaken(account_id)
    if policy.signup_grant:
        grant = Movement(
            kind="grant",
            debit_account_id=SIGNUP,
            credit_account_id=account_id,
            amount=policy.signup_grant,
            app=SYSTEM_APP,
            idempotency_key=f"signup:{account_id}",
            description="sign-up grant",
            lot=LotSpec("signup"),
        )
        await transfer(conn, grant, policy, now)
    return True


# The batch


@dataclass(slots=True)
class _Lot:
    """A live lot as the batch sees it."""

    id: str
    source: str
    remaining: int
    priority: int
    expires_at: datetime | None
    row: dict[str, Any] | None = None  # a lot this batch fills: the row it inserts
    before: int = field(init=False)  # the remaining figure as read

    def __post_init__(self) -> None:
        self.before = self.remaining

    def due(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def inserted(self) -> dict[str, Any]:
        """The row of a lot this batch filled, with what is left of it now."""
        assert self.row is not None
        return {
            **self.row,
            "id": self.id,
            "source": self.source,
            "remaining": self.remaining,
            "priority": self.priority,
            "expires_at": self.expires_at,
        }


@dataclass(slots=True)
class _Account:
    """A locked customer account's figures, changing as the batch applies its entries."""

    id: str
    balance: int
    held: int
    overdraft_limit: int
    debt: int
    status: str
    lots_expire_at: datetime | None
    expiry_as_read: datetime | None  # lots_expire_at when locked
    holds_due: bool  # it may have open holds past their expiry (as locked)
    controlled: bool  # it has members or spend limits
    time_zone: str | None  # its limits' windows'
    runway_burn: int | None  # its spend per day, as the worker last worked it out
    runway_warned: int | None  # the lowest runway level told of
    auto_topup_below: int | None  # an armed auto top-up's threshold (None: not armed)
    lots: list[_Lot] | None = None  # loaded only when something spends or lapses them
    controls: AccountLimits | None = None  # its members and limits, when controlled
    changed: bool = False

    @property
    def available(self) -> int:
        return available(self.balance, self.held, self.overdraft_limit)

    def move(self, balance: int, held: int, *, forced: bool = False) -> None:
        self.balance += balance
        self.held += held
        self.debt = debt_after(self.debt, self.balance, self.held, self.overdraft_limit, forced)
        self.changed = True


@dataclass(slots=True)
class _Key:
    """A proxy key paying for holds of the batch, its figures changing as they apply."""

    id: str
    account_id: str
    spend_limit: int | None
    spent: int
    held: int  # what its open holds reserve
    expires_at: datetime | None
    revoked_at: datetime | None
    changed: bool = False

    def left(self) -> int | None:
        """What the key may still spend or hold (None: no limit)."""
        if self.spend_limit is None:
            return None
        return self.spend_limit - self.spent - self.held


@dataclass(slots=True)
class _Writes:
    """Everything the batch will write, gathered while it applies its entries."""

    transfers: list[tuple[Transfer, str]] = field(default_factory=list)
    holds: list[tuple[Hold, str]] = field(default_factory=list)
    lots: list[_Lot] = field(default_factory=list)
    spends: list[dict[str, Any]] = field(default_factory=list)


class _Batch:
    def __init__(self, conn: AsyncConnection, policy: Policy, now: datetime) -> None:
        self.conn = conn
        self.sql = statements.of(conn)
        self.policy = policy
        self.now = now
        self.accounts: dict[str, _Account] = {}  # by every name the batch used
        self.owners: dict[str, str] = {}  # the account of each hold the batch names
        self.holds: dict[str, Hold] = {}  # the holds the batch names, as they are now
        self.settled: dict[str, Hold] = {}  # the stored holds this batch changed
        self.keys: dict[str, _Key] = {}  # the proxy keys paying for the batch's holds
        self.writes = _Writes()
        self.expired: list[ExpiredHold] = []
        self.repeats: list[tuple[int, int]] = []  # (a repeated key's entry, its first's)
        self.short: set[str] = set()  # the accounts refused for insufficient credits

    async def run(self, entries: Sequence[_Entry]) -> list[EntryOutcome]:
        outcomes: list[EntryOutcome] = [None] * len(entries)
        names = sorted({name for entry in entries for name in _names(entry)})
        hold_ids = sorted({entry.hold_id for entry in entries if isinstance(entry, _HoldEntry)})
        missing = await self._lock(names, hold_ids)
        for index, entry in enumerate(entries):
            if isinstance(entry, _HoldEntry) and entry.hold_id not in self.owners:
                outcomes[index] = HoldNotFound(entry.hold_id)
                continue
            unknown = next((name for name in _names(entry) if name in missing), None)
            if unknown is not None:
                outcomes[index] = AccountNotFound(unknown)
        first_of = _first_keys(entries, outcomes)
        looked_up = {_key(entry) for entry in entries if not _fresh(entry)}
        stored = await self._read(entries, [key for key in first_of if key in looked_up])
        swept = {account_id: Swept([], 0) for account_id in self._by_id()}
        for hold in self.expired:
            swept[hold.account_id].expired_holds.append(hold)
        self._lapse(swept)
        pending = self._claim(entries, outcomes, first_of, stored)
        for index in pending:
            outcomes[index] = self._apply(entries[index], swept)
        self._lapse(swept)  # what the holds settled here no longer keep
        self._repeat(entries, outcomes)
        self.short = {
            str(outcome.details["account_id"])
            for outcome in outcomes
            if isinstance(outcome, InsufficientCredits)
        }
        await self._write()
        return outcomes

    # 1. Locks

    async def _lock(self, names: list[str], hold_ids: list[str]) -> set[str]:
        """Lock the named accounts and those of the named holds, in id order; the names
        no account answers to."""
        if not names and not hold_ids:
            return set()
        await self._load(names, hold_ids)
        missing = [name for name in names if name not in self.accounts]
        if missing and self.policy.auto_create:
            for name in missing:
                await open_customer(self.conn, name, self.policy, self.now)
            await self._load(missing, [])
        return {name for name in names if name not in self.accounts}

    async def _load(self, names: list[str], hold_ids: list[str]) -> None:
        by_id = self._by_id()
        for row in await self.sql.lock_accounts(self.conn, names, hold_ids, self.now):
            account = by_id.get(row.id)
            if account is None:
                account = by_id[row.id] = _Account(
                    row.id,
                    balance=row.balance,
                    held=row.held,
                    debt=row.debt,
                    overdraft_limit=row.overdraft_limit,
                    status=row.status,
                    lots_expire_at=row.lots_expire_at,
                    expiry_as_read=row.lots_expire_at,
                    holds_due=row.holds_due,
                    controlled=row.spend_controls,
                    time_zone=row.time_zone,
                    runway_burn=row.runway_burn,
                    runway_warned=row.runway_warned,
                    auto_topup_below=row.auto_topup_below,
                )
            if row.hold_id is None:
                self.accounts[row.name] = account
            else:
                self.owners[row.hold_id] = row.id
                self.accounts.setdefault(row.id, account)

    # 2. Expired holds, named holds and keys, lots, stored keys

    async def _read(
        self, entries: Sequence[_Entry], keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[Transfer | Hold, str]]:
        """Close the locked accounts' expired holds; load the holds and proxy keys the
        batch names, the lots of the accounts whose credits it may spend or that have lots
        past expiry, the members and spend limits of those that have them (as the closed
        holds leave them); and find what is stored under the batch's keys (``(table, app,
        key)``), each with its fingerprint."""
        accounts = self._by_id()
        wanted = self._wanted(entries, keys, accounts)
        found = (
            statements.Found()
            if wanted.empty()
            else await self.sql.read(self.conn, wanted, self.now)
        )
        self._release_expired(found.expired, accounts)
        self._keep_named(found)
        for paying in found.keys:
            self.keys[paying.id] = _Key(*paying)
        self._load_lots(wanted.lot_owners, found, accounts)
        zones = {account_id: accounts[account_id].time_zone for account_id in wanted.controlled}
        for account_id, controls in found.controls.by_account(zones, self.now).items():
            accounts[account_id].controls = controls
        return await self._stored(found)

    def _wanted(
        self,
        entries: Sequence[_Entry],
        keys: list[tuple[str, str, str]],
        accounts: dict[str, _Account],
    ) -> statements.Wanted:
        """What :meth:`_read` reads for these entries."""
        return statements.Wanted(
            holding=sorted(
                {
                    account_id
                    for account_id, account in accounts.items()
                    if account.held and account.holds_due
                }
                | {
                    self.accounts[entry.account_id].id
                    for entry in entries
                    if isinstance(entry, Sweep) and entry.account_id in self.accounts
                }
            ),
            lot_owners=sorted(
                self._spending(entries)
                | {owner for owner, account in accounts.items() if self._due(account)}
                # its runway warnings need its unspent allowance, credits re-arm them
                | {owner for owner, account in accounts.items() if account.runway_burn}
            ),
            transfer_keys=[(app, key) for table, app, key in keys if table == "transfers"],
            hold_keys=[(app, key) for table, app, key in keys if table == "holds"],
            hold_ids=sorted(self.owners),
            key_ids=sorted(
                {
                    entry.hold.proxy_key_id
                    for entry in entries
                    if isinstance(entry, _Reservation) and entry.hold.proxy_key_id is not None
                }
            ),
            controlled=sorted(
                account_id for account_id, account in accounts.items() if account.controlled
            ),
            members=sorted({member for entry in entries if (member := _member(entry)) is not None}),
        )

    def _spending(self, entries: Sequence[_Entry]) -> set[str]:
        """The locked accounts whose credits the entries may spend, those of the holds they
        capture included."""
        return {
            self.accounts[name].id
            for entry in entries
            for name in _spenders(entry)
            if name in self.accounts
        } | {
            self.owners[entry.hold_id]
            for entry in entries
            if isinstance(entry, _Capture) and entry.hold_id in self.owners
        }

    def _release_expired(self, expired: list[ExpiredHold], accounts: dict[str, _Account]) -> None:
        """Keep the holds the read closed, and release what they reserved."""
        self.expired = expired
        for closed in expired:
            accounts[closed.account_id].move(0, -closed.released)

    def _keep_named(self, found: statements.Found) -> None:
        """Keep the holds the batch names, those the read closed marked expired (it found
        them as they were before)."""
        expired = {closed.hold_id for closed in found.expired}
        for named in found.named:
            self.holds[named.id] = (
                replace(named, status="expired") if named.id in expired else named
            )

    def _load_lots(
        self, owners: list[str], found: statements.Found, accounts: dict[str, _Account]
    ) -> None:
        """Give each lot owner its live lots, none found an empty list."""
        loaded: dict[str, list[_Lot]] = {account_id: [] for account_id in owners}
        for row in found.live:
            lot = _Lot(row.id, row.source, row.remaining, row.priority, row.expires_at)
            loaded[row.account_id].append(lot)
        for account_id, lots in loaded.items():
            accounts[account_id].lots = lots

    async def _stored(
        self, found: statements.Found
    ) -> dict[tuple[str, str, str], tuple[Transfer | Hold, str]]:
        """What the read found under the batch's keys, by ``(table, app, key)``; stored
        transfers with the lots they spent from or filled."""
        stored: dict[tuple[str, str, str], tuple[Transfer | Hold, str]] = {}
        if found.transfers:
            parts = await self.sql.lot_parts(self.conn, [t.id for t, _ in found.transfers.values()])
            for (app, key), (made, print_) in found.transfers.items():
                lots_ = tuple(parts.get(made.id, ()))
                stored["transfers", app, key] = (replace(made, lots=lots_), print_)
        for (app, key), found_hold in found.holds_by_key.items():
            stored["holds", app, key] = found_hold
        return stored

    def _by_id(self) -> dict[str, _Account]:
        return {account.id: account for account in self.accounts.values()}

    def _due(self, account: _Account) -> bool:
        return account.lots_expire_at is not None and account.lots_expire_at <= self.now

    def _lapse(self, swept: dict[str, Swept]) -> None:
        """Lapse the due lots of every locked account that has them, counting them in
        what each account's sweep did.

        An expiry's key names its lot and the remainder it takes, so it never meets a
        stored one.
        """
        accounts = self._by_id()
        for owner in sorted(owner for owner, account in accounts.items() if self._due(account)):
            for lapse in self._lapses(accounts[owner]):
                if isinstance(self._apply(lapse, swept), Transfer):
                    swept[owner].lapsed_lots += 1

    def _lapses(self, account: _Account) -> list[_Posting]:
        """The expiry postings of an account's due lots.

        Open holds keep what they reserve: the due lots are taken to back them first, so
        a lot lapses now only in the part no hold needs, and only a capture may spend
        what is left of it (other debits never reach due lots: they go below zero
        instead). The rest lapses once the holds settle. A lapse takes credits the
        balance already counts, so it goes through even below zero (as debt).
        """
        held = account.held
        postings = []
        due = sorted(
            (lot for lot in account.lots or [] if lot.due(self.now)),
            key=lambda lot: (lot.expires_at, lot.id),
        )
        for lot in due:
            reserved = min(lot.remaining, held)
            held -= reserved
            amount = lot.remaining - reserved
            if amount <= 0:
                continue
            lapse = Movement(
                kind="expiry",
                debit_account_id=account.id,
                credit_account_id=EXPIRED,
                amount=amount,
                app=SYSTEM_APP,
                idempotency_key=f"expiry:{lot.id}:{lot.remaining}",
                description="credits expired",
                first_lot=lot.id,
                system=True,
                forced=True,
            )
            postings.append(_posting(lapse))
        return postings

    # 3. Idempotency keys

    def _claim(
        self,
        entries: Sequence[_Entry],
        outcomes: list[EntryOutcome],
        first_of: dict[tuple[str, str, str], int],
        stored: dict[tuple[str, str, str], tuple[Transfer | Hold, str]],
    ) -> list[int]:
        """Answer replays and conflicts from the stored keys; the indexes left to apply.

        A key a batch carries twice is applied once; the repeat answers what the first
        got (see :meth:`_repeat`).
        """
        left = []
        for index, entry in enumerate(entries):
            key = _key(entry)
            if outcomes[index] is not None:
                continue
            if key is None:
                left.append(index)
            elif key in stored:
                outcomes[index] = self._replay(entry, *stored[key])
            elif first_of[key] == index:
                left.append(index)
            else:
                self.repeats.append((index, first_of[key]))
        return left

    def _replay(self, entry: _Entry, found: Transfer | Hold, stored: str) -> EntryOutcome:
        """The stored result of an earlier identical request, or a conflict if it differed."""
        key = _key(entry)
        assert key is not None
        if stored != _print(entry):
            return IdempotencyConflict(key[2])
        if isinstance(entry, _Capture):
            assert isinstance(found, Transfer)
            return Settled(self.holds[entry.hold_id], found)
        return found

    def _repeat(self, entries: Sequence[_Entry], outcomes: list[EntryOutcome]) -> None:
        """Answer each key repeated within the batch as a later request would be."""
        for index, first in self.repeats:
            entry, outcome = entries[index], outcomes[first]
            key = _key(entry)
            assert key is not None
            if _print(entry) != _print(entries[first]):
                outcomes[index] = IdempotencyConflict(key[2])
            elif isinstance(outcome, Transfer | Hold):
                outcomes[index] = replace(outcome, replayed=True)
            elif isinstance(outcome, Settled):
                again = replace(outcome.transfer, replayed=True)
                outcomes[index] = Settled(self.holds[outcome.hold.id], again)
            else:
                outcomes[index] = outcome

    # 4. Applying entries

    def _apply(self, entry: _Entry, swept: dict[str, Swept]) -> EntryOutcome:
        try:
            if isinstance(entry, _Posting):
                return self._transfer(entry)
            if isinstance(entry, _Reservation):
                return self._reserve(entry)
            if isinstance(entry, _Capture):
                return self._capture(entry)
            if isinstance(entry, ReleaseHold):
                return self._release(entry)
            if isinstance(entry, ExtendHold):
                return self._extend(entry)
            return swept[self.accounts[entry.account_id].id]
        except CreditsError as error:
            return error

    def _transfer(self, posting: _Posting) -> Transfer:
        debit = self.accounts.get(posting.debit_account_id)
        credit = self.accounts.get(posting.credit_account_id)
        named = posting.member if posting.hold_id is None else None  # a capture's: its hold's
        controls = None if debit is None else self._controls(debit, named)
        if debit is not None:
            self._check_debit(debit, posting)
        if credit is not None and credit.balance > INT64_MAX - posting.amount:
            raise BalanceLimit(credit.id)
        if controls is not None:
            _count(controls, posting)
        transfer_id = ids.new_id("tr")
        parts: list[LotPart] = []
        if debit is not None:
            debit.move(-posting.amount, -posting.released_held, forced=posting.forced)
            parts += self._spend(debit, transfer_id, posting)
        if credit is not None:
            credit.move(posting.amount, 0)
            parts.append(self._fill(credit, transfer_id, posting))
        made = Transfer(
            id=transfer_id,
            kind=posting.kind,
            debit_account_id=debit.id if debit else posting.debit_account_id,
            credit_account_id=credit.id if credit else posting.credit_account_id,
            amount=posting.amount,
            app=posting.app,
            idempotency_key=posting.idempotency_key,
            hold_id=posting.hold_id,
            description=posting.description,
            metadata=posting.metadata,
            debit_balance_after=debit.balance if debit else None,
            debit_available_after=debit.available if debit else None,
            credit_balance_after=credit.balance if credit else None,
            credit_available_after=credit.available if credit else None,
            created_at=self.now,
            pricing=posting.pricing,
            lots=tuple(sorted(parts, key=lambda part: part.lot_id)),
            proxy_key_id=posting.proxy_key_id,
            member_id=posting.member,
        )
        self.writes.transfers.append((made, posting.fingerprint))
        return made

    def _controls(self, account: _Account, member: str | None) -> AccountLimits | None:
        """The account's members and limits (None: it has none); a member it does not
        have is refused."""
        if account.controls is None:
            if member is not None:
                raise MemberNotFound(account.id, member)
            return None
        account.controls.check_member(member)
        return account.controls

    def _check_debit(self, account: _Account, posting: _Posting) -> None:
        if not posting.system and account.status != "active":
            raise not_active(account.id, account.status)
        if posting.forced:
            if account.balance < INT64_MIN + posting.amount:
                raise BalanceLimit(account.id)
            return
        need = posting.amount - posting.released_held
        if need > 0 and account.available < need:
            raise InsufficientCredits(account.id, required=need, available=account.available)

    def _reserve(self, reservation: _Reservation) -> Hold:
        account = self.accounts[reservation.hold.account_id]
        amount = reservation.hold.amount
        controls = self._controls(account, reservation.hold.member_id)
        key = self._paying(reservation.hold.proxy_key_id)
        if account.status != "active":
            raise not_active(account.id, account.status)
        if account.available < amount:
            raise InsufficientCredits(account.id, required=amount, available=account.available)
        if key is not None:
            if key.account_id != account.id:
                raise WrongAccount(key.id, key.account_id)
            left = key.left()
            if left is not None and left < amount:
                assert key.spend_limit is not None
                raise KeyLimitReached(key.id, key.spend_limit, amount, left)
        hold = replace(reservation.hold, account_id=account.id)
        if controls is not None:
            spender = _spender(hold)
            controls.check(spender, amount)
            controls.move(spender, held=amount)
        if key is not None:
            key.held += amount
        account.move(0, amount)
        self.writes.holds.append((hold, reservation.fingerprint))
        return hold

    def _paying(self, key_id: str | None) -> _Key | None:
        """The proxy key that is to pay for a new hold: refused (401) once revoked or
        expired, whatever a cache said when the request came in."""
        if key_id is None:
            return None
        key = self.keys.get(key_id)
        if key is None:
            raise ProxyKeyNotFound(key_id)
        if key.revoked_at is not None:
            raise ProxyKeyRevoked
        if key.expires_at is not None and key.expires_at <= self.now:
            raise ProxyKeyExpired(key.expires_at)
        return key

    def _capture(self, entry: _Capture) -> Settled:
        capture = entry.command
        hold = self.holds[capture.hold_id]
        late = (
            hold.status == "expired"
            and capture.final
            and capture.finished_at is not None
            and capture.finished_at < hold.expires_at
        )
        if hold.status != "open" and not late:
            raise HoldNotOpen(hold.id, hold.status)
        account = self.accounts[hold.account_id]
        if account.status != "active":
            raise not_active(account.id, account.status)
        reserved = 0 if late else hold.amount - hold.captured
        if not capture.final and capture.amount > reserved:
            raise HoldExceeded(hold.id)
        charged = self._within_limits(account, hold, capture, reserved)
        released = reserved if capture.final else charged
        if charged - released > account.available:
            short = InsufficientCredits(
                account.id, required=charged - released, available=account.available
            )
            charged = released + max(account.available, 0)
            if capture.overrun != "cap" or charged <= 0:
                raise short
        made = self._transfer(
            _Posting(
                kind="capture",
                debit_account_id=account.id,
                credit_account_id=REVENUE,
                amount=charged,
                app=capture.app,
                idempotency_key=capture.idempotency_key,
                fingerprint=entry.fingerprint,
                description=_given(capture.description, hold.description),
                metadata=_given(capture.metadata, hold.metadata),
                hold_id=hold.id,
                released_held=released,
                pricing=self._settlement(capture, hold, reserved, charged, late),
                proxy_key_id=hold.proxy_key_id,
                member=hold.member_id,
            )
        )
        if hold.proxy_key_id is not None:
            key = self.keys[hold.proxy_key_id]
            key.spent += charged
            key.held -= released
            key.changed = True
        if account.controls is not None:
            account.controls.move(_spender(hold), spent=charged, held=-released)
        status = "captured" if capture.final else "open"
        self._change(hold, captured=hold.captured + charged, status=status)
        return Settled(self.holds[hold.id], made)

    def _within_limits(
        self, account: _Account, hold: Hold, capture: CaptureHold, reserved: int
    ) -> int:
        """The most a capture may charge within the proxy key paying for its hold (see
        :meth:`_ceiling`) and the hard spend limits of its hold's spender: all of it when
        what passes the hold fits, else (``cap``) what the tightest limit leaves, else
        402. A slice never passes its hold."""
        charged = self._ceiling(hold, capture, reserved)
        controls = account.controls
        if controls is None or not capture.final:
            return charged
        tightest = controls.tightest(_spender(hold))
        if tightest is None or charged - reserved <= tightest.left():
            return charged
        if capture.overrun != "cap" or reserved + tightest.left() <= 0:
            raise LimitReached(tightest, charged - reserved)
        return reserved + max(tightest.left(), 0)

    def _ceiling(self, hold: Hold, capture: CaptureHold, reserved: int) -> int:
        """The most a capture may charge within the proxy key paying for its hold: all of
        it within the key's limit, else (``cap``) what the limit leaves, else 402. What
        the limit leaves is never less than what the hold itself reserves."""
        key = None if hold.proxy_key_id is None else self.keys[hold.proxy_key_id]
        left = None if key is None else key.left()
        if left is None:
            return capture.amount
        assert key is not None
        assert key.spend_limit is not None
        left += reserved
        if capture.amount <= left:
            return capture.amount
        if capture.overrun != "cap" or left <= 0:
            required, available = capture.amount - reserved, left - reserved
            raise KeyLimitReached(key.id, key.spend_limit, required, available)
        return left

    def _settlement(
        self, capture: CaptureHold, hold: Hold, reserved: int, charged: int, late: bool
    ) -> Metadata | None:
        """What a capture records beside its price: how it settled against the hold
        (credits)."""
        if not capture.final and capture.pricing is None:
            return None
        asked = capture.amount
        if late:
            outcome = "after_expiry"
        elif asked <= reserved:
            outcome = "within_hold"
        elif charged == asked:
            outcome = "over_hold_charged"
        else:
            outcome = "over_hold_capped"
        money = self.policy.money
        return {
            **(capture.pricing or {}),
            "settlement": {
                "outcome": outcome,
                "estimate": money.to_decimal(hold.amount),
                "held_before": money.to_decimal(reserved),
                "actual": money.to_decimal(asked),
                "charged": money.to_decimal(charged),
                "released": money.to_decimal(max(reserved - charged, 0) if capture.final else 0),
                "uncollected": money.to_decimal(asked - charged),
            },
        }

    def _release(self, release: ReleaseHold) -> Hold:
        hold = self.holds[release.hold_id]
        if hold.status in {"released", "expired"}:
            return hold
        if hold.status != "open":
            raise HoldNotOpen(hold.id, hold.status)
        reserved = hold.amount - hold.captured
        account = self.accounts[hold.account_id]
        account.move(0, -reserved)
        if hold.proxy_key_id is not None:
            self.keys[hold.proxy_key_id].held -= reserved
        if account.controls is not None:
            account.controls.move(_spender(hold), held=-reserved)
        return self._change(hold, status="released")

    def _extend(self, extend: ExtendHold) -> Hold:
        hold = self.holds[extend.hold_id]
        if hold.status != "open":
            raise HoldNotOpen(hold.id, hold.status)
        return self._change(hold, expires_at=self.now + timedelta(seconds=extend.expires_in))

    def _change(self, hold: Hold, **changes: Any) -> Hold:
        """A named hold as this batch changes it (written with the batch)."""
        changed = self.holds[hold.id] = self.settled[hold.id] = replace(
            hold, **changes, updated_at=self.now
        )
        return changed

    def _spend(self, account: _Account, transfer_id: str, posting: _Posting) -> list[LotPart]:
        """Take a debit from the account's lots in order; what no lot covers is below zero."""
        assert account.lots is not None, "the lots of every debited account are loaded"
        left = posting.amount
        parts = []
        for lot in _spend_order(account.lots, self.now, posting):
            taken = min(left, lot.remaining)
            lot.remaining -= taken
            left -= taken
            parts.append(LotPart(lot.id, lot.source, taken, lot.expires_at))
            self.writes.spends.append(
                {"transfer_id": transfer_id, "lot_id": lot.id, "amount": taken}
            )
            if not left:
                break
        account.lots_expire_at = _soonest(account.lots)
        return parts

    def _fill(self, account: _Account, transfer_id: str, posting: _Posting) -> LotPart:
        """Put a credit into a new lot; what pays back debt is in no lot.

        The debt is what the balance is below the lots past expiry that open holds keep
        (other debits went below zero beside them), or below zero when none are kept.
        """
        spec = posting.lot or default_spec(posting.kind)
        kept = sum(lot.remaining for lot in account.lots or () if lot.due(self.now))
        lot = _Lot(
            ids.new_id("lot"),
            spec.source,
            min(posting.amount, max(account.balance - kept, 0)),
            spec.spend_priority,
            spec.expires_at,
            row={
                "account_id": account.id,
                "amount": posting.amount,
                "transfer_id": transfer_id,
                "reference": spec.reference,
                "created_at": self.now,
            },
        )
        self.writes.lots.append(lot)
        if account.lots is not None:
            account.lots.append(lot)
        if spec.expires_at is not None and lot.remaining:
            soonest = account.lots_expire_at
            account.lots_expire_at = min(spec.expires_at, soonest or spec.expires_at)
        return LotPart(lot.id, spec.source, posting.amount, spec.expires_at)

    # 5. Writes

    async def _write(self) -> None:
        sql, conn, writes = self.sql, self.conn, self.writes
        counted, warnings = self._counted()
        changed = {
            account.id: account
            for account in self.accounts.values()
            if account.changed or account.expiry_as_read != account.lots_expire_at
        }
        written = statements.Written(
            now=self.now,
            holds=writes.holds,
            transfers=writes.transfers,
            settled=[self.settled[hold_id] for hold_id in sorted(self.settled)],
            keys=[(key.id, key.spent) for key in self.keys.values() if key.changed],
            accounts=[changed[account_id] for account_id in sorted(changed)],
            lowered=[
                (lot.id, lot.remaining)
                for account in changed.values()
                for lot in account.lots or []
                if lot.row is None and lot.before != lot.remaining
            ],
            lots=[lot.inserted() for lot in writes.lots],
            spends=writes.spends,
            messages=await self._messages(warnings, self._runway_warnings(changed.values())),
            windows=[
                (
                    tally.limit.account_id,
                    tally.limit.id,
                    tally.window.start,
                    tally.spent - tally.read,
                    tally.warned,
                )
                for tally in counted
            ],
        )
        if written.holds or written.settled or written.accounts or written.transfers:
            await sql.write(conn, written)

    def _counted(self) -> tuple[list[Tally], list[LimitWarning]]:
        """The limit windows whose spend the batch changed, and the warnings their new
        spend sends: once per window at each of the policy's percentages reached."""
        counted = [
            tally
            for account in self._by_id().values()
            if account.controls is not None
            for tally in account.controls.changed()
        ]
        warnings = []
        for tally in counted:
            percent = tally.crossed(self.policy.limit_warnings)
            if percent is not None:
                tally.warned = percent
                warnings.append(LimitWarning(tally, percent))
        return counted, warnings

    def _runway_warnings(self, changed: Iterable[_Account]) -> list[RunwayWarning]:
        """The runway warnings of the changed accounts whose burn the worker has stored
        (the batch read their lots, which tell their unspent allowance): arithmetic on what
        the batch read, the level told of written back with the account's figures (see
        :func:`runway.next_warning`). A credit re-arms what it lifts past the margin."""
        warnings = []
        for account in changed:
            if not account.runway_burn or account.lots is None:
                continue
            allowance = sum(
                lot.remaining
                for lot in account.lots
                if lot.source == ALLOWANCE_SOURCE and not lot.due(self.now)
            )
            left = available_without_allowance(account.available, allowance)
            level, account.runway_warned = next_warning(
                left, account.runway_burn, account.runway_warned
            )
            if level is not None:
                runway = at_burn(left, account.runway_burn, self.now)
                warnings.append(RunwayWarning(account.id, level, runway))
        return warnings

    async def _messages(
        self, warnings: list[LimitWarning], runway_warnings: list[RunwayWarning]
    ) -> list[Message]:
        """What the observer sends of this batch's changes."""
        observer, messages = self.policy.observer, []
        if observer is not None and warnings:
            messages += await observer.after_limit_warnings(self.conn, warnings, self.now)
        if observer is not None and runway_warnings:
            messages += await observer.after_runway_warnings(self.conn, runway_warnings, self.now)
        if observer is not None and self.expired:
            messages += await observer.after_holds_expired(self.conn, self.expired, self.now)
        if observer is not None and self.writes.transfers:
            made = [made for made, _ in self.writes.transfers]
            messages += await observer.after_transfers(self.conn, made, self.now)
        if observer is not None and (due := self._topups_due()):
            messages += await observer.after_balances(self.conn, due, self.short, self.now)
        return messages

    def _topups_due(self) -> dict[str, int]:
        """The ``available`` credits of the accounts with an armed auto top-up that this
        batch debited or held below its threshold, or refused for insufficient credits (no
        round trip unless one is due)."""
        debited = {t.debit_account_id for t, _ in self.writes.transfers} | self.short
        debited |= {hold.account_id for hold, _ in self.writes.holds}
        return {
            account.id: account.available
            for account in self._by_id().values()
            if account.auto_topup_below is not None
            and account.id in debited
            and (account.available < account.auto_topup_below or account.id in self.short)
        }


def _names(entry: _Entry) -> list[str]:
    """The customer accounts an entry names (a hold's is found by the hold)."""
    if isinstance(entry, _Posting):
        sides = (entry.debit_account_id, entry.credit_account_id)
        return [side for side in sides if not is_system(side)]
    if isinstance(entry, _Reservation):
        return [entry.hold.account_id]
    if isinstance(entry, Sweep):
        return [entry.account_id]
    return []


def _spenders(entry: _Entry) -> list[str]:
    """The customer accounts (by the names entries give) whose lots an entry may spend."""
    if isinstance(entry, _Posting) and not is_system(entry.debit_account_id):
        return [entry.debit_account_id]
    return []


def _first_keys(
    entries: Sequence[_Entry], outcomes: list[EntryOutcome]
) -> dict[tuple[str, str, str], int]:
    """Each key the batch's entries carry (``(table, app, key)``), and its first entry."""
    first_of: dict[tuple[str, str, str], int] = {}
    for index, entry in enumerate(entries):
        key = _key(entry)
        if key is not None and outcomes[index] is None:
            first_of.setdefault(key, index)
    return first_of


def _key(entry: _Entry) -> tuple[str, str, str] | None:
    if isinstance(entry, _Posting):
        return "transfers", entry.app, entry.idempotency_key
    if isinstance(entry, _Capture):
        return "transfers", entry.command.app, entry.command.idempotency_key
    if isinstance(entry, _Reservation):
        return "holds", entry.hold.app, entry.hold.idempotency_key
    return None


def _fresh(entry: _Entry) -> bool:
    return isinstance(entry, _Posting | _Reservation) and entry.fresh_key


def _print(entry: _Entry) -> str:
    assert isinstance(entry, _Posting | _Reservation | _Capture)
    return entry.fingerprint


def _spend_order(lots: list[_Lot], now: datetime, posting: _Posting) -> list[_Lot]:
    """``first_lot`` (a refund's purchase, an expiry's lot); then, for a hold's capture,
    the due lots the holds kept; then by priority, soonest expiry (none last) and age.
    Any other debit never spends a due lot: what open holds keep of it is theirs, and
    what no hold keeps has lapsed already."""
    live = [lot for lot in lots if lot.remaining]
    first = [lot for lot in live if lot.id == posting.first_lot]
    rest = sorted(
        (lot for lot in live if not lot.due(now) and lot.id != posting.first_lot),
        key=lambda lot: (lot.priority, lot.expires_at is None, lot.expires_at or now, lot.id),
    )
    if posting.hold_id is None:
        return first + rest
    due = sorted(
        (lot for lot in live if lot.due(now) and lot.id != posting.first_lot),
        key=lambda lot: (lot.expires_at, lot.id),
    )
    return first + due + rest


def _given(value: T, otherwise: T) -> T:
    """``value``, or ``otherwise`` when it is None (a capture's description or metadata
    default to its hold's)."""
    return otherwise if value is None else value


def _soonest(lots: list[_Lot]) -> datetime | None:
    """The soonest expiry among live lots (due ones included: they lapse at the next touch)."""
    return min((lot.expires_at for lot in lots if lot.remaining and lot.expires_at), default=None)


def _count(controls: AccountLimits, posting: _Posting) -> None:
    """Check a debit against the spend limits of who it is for, and count it (a hold's
    capture is counted with its hold; a forced debit is counted, never refused)."""
    if posting.hold_id is not None or posting.kind not in SPEND_KINDS:
        return
    spender = Spender(posting.member, posting.app, posting.proxy_key_id)
    if not posting.forced:
        controls.check(spender, posting.amount)
    controls.move(spender, spent=posting.amount)


def _spender(hold: Hold) -> Spender:
    """Who a hold is for: its member, its app, the proxy key paying."""
    return Spender(hold.member_id, hold.app, hold.proxy_key_id)


def _member(entry: _Entry) -> str | None:
    """The member an entry names."""
    if isinstance(entry, _Posting):
        return entry.member
    if isinstance(entry, _Reservation):
        return entry.hold.member_id
    return None
