"""The posting engine: every credit movement is written here, a batch at a time.

A batch is a list of entries: transfers (:class:`Posting`), hold openings
(:class:`Reservation`), releases of what a hold reserved (:class:`Release`) and tidy-ups
of an account (:class:`Sweep`). A single charge is a batch of one. :func:`post` writes a
batch inside its caller's transaction, in this order:

1. lock the customer accounts the batch names (ids or aliases), in id order, creating
   unknown ones when the policy allows (each with its sign-up grant);
2. close the holds of those accounts that expired, and lapse their lots past expiry;
3. claim the idempotency keys: a replay answers its stored result, a key reused with
   another request is ``409 idempotency_conflict`` (a key its entry calls fresh is not
   looked up). Nothing has moved yet, so nothing is ever undone;
4. apply each entry in order to the locked figures, in Python: the guards (what the
   account may spend, its status, the 64-bit range) refuse an entry alone, never its
   batch-mates; debits spend lots in order, credits fill new ones;
5. write it all set-based: transfers (their unique key is the claim), holds, one update
   per account, lots, lot spends, then the observer's outbox rows.

The database keeps its own rules underneath (``CHECK`` on every figure, unique keys),
so a bug here fails the transaction rather than the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd import ids
from creditsd.errors import CreditsError
from creditsd.idempotency import fingerprint
from creditsd.ledger import statements
from creditsd.ledger.errors import (
    AccountNotFound,
    AliasTaken,
    BalanceLimit,
    IdempotencyConflict,
    InsufficientCredits,
    not_active,
)
from creditsd.ledger.lots import LotSpec, default_spec
from creditsd.ledger.models import (
    EXPIRED,
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
from creditsd.ledger.statements import Message
from creditsd.money import INT64_MAX, INT64_MIN


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


@dataclass(frozen=True, slots=True)
class Policy:
    """Deployment rules the engine follows."""

    auto_create: bool = True
    signup_grant: int = 0
    observer: Observer | None = None


@dataclass(frozen=True, slots=True)
class Posting:
    """A transfer to be written: who pays whom, how much, why, under which idempotency key.

    Either side may be an alias; the transfer names the accounts they resolve to.
    """

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
    fresh_key: bool = False  # nothing is stored under the key: see Reservation.fresh_key


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold to open: ``hold.amount`` of the account's available credits set aside."""

    hold: Hold  # its account_id may be an alias
    fingerprint: str
    # Nothing can be stored under the key (minted for this request, or looked up already
    # in this transaction), so the engine does not look; the insert's unique key still
    # catches a concurrent claim (the transaction reruns).
    fresh_key: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """A hold stops reserving ``amount`` of an account's credits."""

    account_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class Sweep:
    """Tidy an account: close its expired holds, lapse its lots past expiry."""

    account_id: str


@dataclass(slots=True)
class Swept:
    """What a sweep of one account did."""

    expired_holds: list[ExpiredHold]
    lapsed_lots: int


Entry = Posting | Reservation | Release | Sweep
Outcome = Transfer | Hold | Swept | None | CreditsError


def movement(
    kind: str,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    *,
    app: str,
    idempotency_key: str,
    description: str | None = None,
    metadata: Metadata | None = None,
    pricing: Metadata | None = None,
    asked: Metadata | None = None,
    lot: LotSpec | None = None,
    fresh_key: bool = False,
) -> Posting:
    """A posting whose fingerprint is everything it asks for.

    A priced posting passes what the caller ``asked`` (the use, not its price), so a
    replay matches even after the catalog changed. ``fresh_key``: the key was minted for
    this request.
    """
    return Posting(
        kind=kind,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        app=app,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint(
            kind,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            **(asked or {"amount": amount}),
            description=description,
            metadata=metadata,
            **({} if lot is None else {"lot": _lot_request(lot)}),
        ),
        description=description,
        metadata=metadata,
        pricing=pricing,
        lot=lot,
        fresh_key=fresh_key,
    )


def _lot_request(lot: LotSpec) -> Metadata:
    expires_at = None if lot.expires_at is None else lot.expires_at.isoformat()
    return {"source": lot.source, "expires_at": expires_at, "priority": lot.priority}


# The entry points


async def post(
    conn: AsyncConnection, entries: Sequence[Entry], policy: Policy, now: datetime
) -> list[Outcome]:
    """Write a batch; each entry's outcome (or the error that refused it alone), in order."""
    return await _Batch(conn, policy, now).run(entries)


async def _one(conn: AsyncConnection, entry: Entry, policy: Policy, now: datetime) -> Outcome:
    """A batch of one: its outcome, or its refusal raised."""
    (outcome,) = await post(conn, [entry], policy, now)
    if isinstance(outcome, CreditsError):
        raise outcome
    return outcome


async def transfer(
    conn: AsyncConnection, posting: Posting, policy: Policy, now: datetime
) -> Transfer:
    """Write one transfer exactly once (a replay answers the first)."""
    made = await _one(conn, posting, policy, now)
    assert isinstance(made, Transfer)
    return made


async def reserve(
    conn: AsyncConnection, reservation: Reservation, policy: Policy, now: datetime
) -> Hold:
    """Open one hold exactly once (a replay answers the first)."""
    opened = await _one(conn, reservation, policy, now)
    assert isinstance(opened, Hold)
    return opened


async def release(
    conn: AsyncConnection, account_id: str, amount: int, policy: Policy, now: datetime
) -> None:
    """Give back ``amount`` a hold reserved on an account."""
    await _one(conn, Release(account_id, amount), policy, now)


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
        grant = movement(
            "grant",
            SIGNUP,
            account_id,
            policy.signup_grant,
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
    lots: list[_Lot] | None = None  # loaded only when something spends or lapses them
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
        self.writes = _Writes()
        self.expired: list[ExpiredHold] = []
        self.repeats: list[tuple[int, int]] = []  # (a repeated key's entry, its first's)

    async def run(self, entries: Sequence[Entry]) -> list[Outcome]:
        outcomes: list[Outcome] = [None] * len(entries)
        names = sorted({name for entry in entries for name in _names(entry)})
        missing = await self._lock(names)
        for index, entry in enumerate(entries):
            unknown = next((name for name in _names(entry) if name in missing), None)
            if unknown is not None:
                outcomes[index] = AccountNotFound(unknown)
        first_of = _first_keys(entries, outcomes)
        looked_up = {_key(entry) for entry in entries if not _fresh(entry)}
        stored = await self._read(entries, [key for key in first_of if key in looked_up])
        swept = self._lapse()
        pending = self._claim(entries, outcomes, first_of, stored)
        for index in pending:
            outcomes[index] = self._apply(entries[index], swept)
        self._repeat(entries, outcomes)
        await self._write()
        return outcomes

    # 1. Locks

    async def _lock(self, names: list[str]) -> set[str]:
        """Lock the named accounts in id order; the names no account answers to."""
        if not names:
            return set()
        await self._load(names)
        missing = [name for name in names if name not in self.accounts]
        if missing and self.policy.auto_create:
            for name in missing:
                await open_customer(self.conn, name, self.policy, self.now)
            await self._load(missing)
        return {name for name in names if name not in self.accounts}

    async def _load(self, names: list[str]) -> None:
        by_id: dict[str, _Account] = {}
        for row in await self.sql.lock_accounts(self.conn, names, self.now):
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
                )
            self.accounts[row.name] = account

    # 2. Expired holds, lots, stored keys

    async def _read(
        self, entries: Sequence[Entry], keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], tuple[Transfer | Hold, str]]:
        """Close the locked accounts' expired holds; load the lots of those whose credits
        the batch may spend or that have lots past expiry; and find what is stored under
        the batch's keys (``(table, app, key)``), each with its fingerprint."""
        accounts = self._by_id()
        holding = sorted(
            account_id
            for account_id, account in accounts.items()
            if account.held and account.holds_due
        )
        spending = {
            self.accounts[name].id
            for entry in entries
            for name in _spenders(entry)
            if name in self.accounts
        }
        wanted = sorted(
            spending | {owner for owner, account in accounts.items() if self._due(account)}
        )
        transfer_keys = [(app, key) for table, app, key in keys if table == "transfers"]
        self.expired, live, found = await self.sql.read(
            self.conn, holding, self.now, wanted, transfer_keys
        )
        for hold in self.expired:
            accounts[hold.account_id].move(0, -hold.released)
        loaded: dict[str, list[_Lot]] = {account_id: [] for account_id in wanted}
        for row in live:
            lot = _Lot(row.id, row.source, row.remaining, row.priority, row.expires_at)
            loaded[row.account_id].append(lot)
        for account_id, lots in loaded.items():
            accounts[account_id].lots = lots
        stored: dict[tuple[str, str, str], tuple[Transfer | Hold, str]] = {}
        if found:
            parts = await self.sql.lot_parts(self.conn, [t.id for t, _ in found.values()])
            for (app, key), (made, print_) in found.items():
                lots_ = tuple(parts.get(made.id, ()))
                stored["transfers", app, key] = (replace(made, lots=lots_), print_)
        hold_keys = [(app, key) for table, app, key in keys if table == "holds"]
        if hold_keys:
            found_holds = await self.sql.holds_by_key(self.conn, hold_keys)
            for (app, key), found_hold in found_holds.items():
                stored["holds", app, key] = found_hold
        return stored

    def _by_id(self) -> dict[str, _Account]:
        return {account.id: account for account in self.accounts.values()}

    def _due(self, account: _Account) -> bool:
        return account.lots_expire_at is not None and account.lots_expire_at <= self.now

    def _lapse(self) -> dict[str, Swept]:
        """Lapse the due lots of every locked account that has them; what each sweep did.

        An expiry's key names its lot and the remainder it takes, so it never meets a
        stored one.
        """
        accounts = self._by_id()
        swept = {account_id: Swept([], 0) for account_id in accounts}
        for hold in self.expired:
            swept[hold.account_id].expired_holds.append(hold)
        for owner in sorted(owner for owner, account in accounts.items() if self._due(account)):
            for lapse in self._lapses(accounts[owner]):
                if isinstance(self._apply(lapse, swept), Transfer):
                    swept[owner].lapsed_lots += 1
        return swept

    def _lapses(self, account: _Account) -> list[Posting]:
        """The expiry postings of an account's due lots.

        Open holds keep what they reserve: the due lots are taken to back them first, so
        a lot lapses now only in the part no hold needs, and only a capture may spend
        what is left of it (plain debits reach due lots last). The rest lapses at the
        first touch after the holds settle.
        """
        held = account.held
        spendable = account.balance - account.held
        postings = []
        due = sorted(
            (lot for lot in account.lots or [] if lot.due(self.now)),
            key=lambda lot: (lot.expires_at, lot.id),
        )
        for lot in due:
            reserved = min(lot.remaining, held)
            held -= reserved
            amount = min(lot.remaining - reserved, spendable)
            if amount <= 0:
                continue
            spendable -= amount
            posting = movement(
                "expiry",
                account.id,
                EXPIRED,
                amount,
                app=SYSTEM_APP,
                idempotency_key=f"expiry:{lot.id}:{lot.remaining}",
                description="credits expired",
            )
            postings.append(replace(posting, first_lot=lot.id, system=True))
        return postings

    # 3. Idempotency keys

    def _claim(
        self,
        entries: Sequence[Entry],
        outcomes: list[Outcome],
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
                outcomes[index] = _replay(*stored[key], _print(entry), key[2])
            elif first_of[key] == index:
                left.append(index)
            else:
                self.repeats.append((index, first_of[key]))
        return left

    def _repeat(self, entries: Sequence[Entry], outcomes: list[Outcome]) -> None:
        """Answer each key repeated within the batch as a later request would be."""
        for index, first in self.repeats:
            entry, outcome = entries[index], outcomes[first]
            key = _key(entry)
            assert key is not None
            if _print(entry) != _print(entries[first]):
                outcomes[index] = IdempotencyConflict(key[2])
            elif isinstance(outcome, Transfer | Hold):
                outcomes[index] = replace(outcome, replayed=True)
            else:
                outcomes[index] = outcome

    # 4. Applying entries

    def _apply(self, entry: Entry, swept: dict[str, Swept]) -> Outcome:
        try:
            if isinstance(entry, Posting):
                return self._transfer(entry)
            if isinstance(entry, Reservation):
                return self._reserve(entry)
            if isinstance(entry, Release):
                self.accounts[entry.account_id].move(0, -entry.amount)
                return None
            return swept[self.accounts[entry.account_id].id]
        except CreditsError as error:
            return error

    def _transfer(self, posting: Posting) -> Transfer:
        debit = self.accounts.get(posting.debit_account_id)
        credit = self.accounts.get(posting.credit_account_id)
        if debit is not None:
            self._check_debit(debit, posting)
        if credit is not None and credit.balance > INT64_MAX - posting.amount:
            raise BalanceLimit(credit.id)
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
        )
        self.writes.transfers.append((made, posting.fingerprint))
        return made

    def _check_debit(self, account: _Account, posting: Posting) -> None:
        if not posting.system and account.status != "active":
            raise not_active(account.id, account.status)
        if posting.forced:
            if account.balance < INT64_MIN + posting.amount:
                raise BalanceLimit(account.id)
            return
        need = posting.amount - posting.released_held
        if need > 0 and account.available < need:
            raise InsufficientCredits(account.id, required=need, available=account.available)

    def _reserve(self, reservation: Reservation) -> Hold:
        account = self.accounts[reservation.hold.account_id]
        amount = reservation.hold.amount
        if account.status != "active":
            raise not_active(account.id, account.status)
        if account.available < amount:
            raise InsufficientCredits(account.id, required=amount, available=account.available)
        account.move(0, amount)
        hold = replace(reservation.hold, account_id=account.id)
        self.writes.holds.append((hold, reservation.fingerprint))
        return hold

    def _spend(self, account: _Account, transfer_id: str, posting: Posting) -> list[LotPart]:
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

    def _fill(self, account: _Account, transfer_id: str, posting: Posting) -> LotPart:
        """Put a credit into a new lot; what a negative balance swallows is in no lot."""
        spec = posting.lot or default_spec(posting.kind)
        lot = _Lot(
            ids.new_id("lot"),
            spec.source,
            min(posting.amount, max(account.balance, 0)),
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
        changed = {
            account.id: account
            for account in self.accounts.values()
            if account.changed or account.expiry_as_read != account.lots_expire_at
        }
        written = statements.Written(
            now=self.now,
            holds=writes.holds,
            transfers=writes.transfers,
            accounts=[changed[account_id] for account_id in sorted(changed)],
            lowered=[
                (lot.id, lot.remaining)
                for account in changed.values()
                for lot in account.lots or []
                if lot.row is None and lot.before != lot.remaining
            ],
            lots=[lot.inserted() for lot in writes.lots],
            spends=writes.spends,
            messages=await self._messages(),
        )
        if written.holds or written.accounts or written.transfers or written.messages:
            await sql.write(conn, written)

    async def _messages(self) -> list[Message]:
        """What the observer sends of this batch's changes."""
        observer, messages = self.policy.observer, []
        if observer is not None and self.expired:
            messages += await observer.after_holds_expired(self.conn, self.expired, self.now)
        if observer is not None and self.writes.transfers:
            made = [made for made, _ in self.writes.transfers]
            messages += await observer.after_transfers(self.conn, made, self.now)
        return messages


def _names(entry: Entry) -> list[str]:
    """The customer accounts an entry names."""
    if isinstance(entry, Posting):
        sides = (entry.debit_account_id, entry.credit_account_id)
        return [side for side in sides if not is_system(side)]
    if isinstance(entry, Reservation):
        return [entry.hold.account_id]
    return [entry.account_id]


def _spenders(entry: Entry) -> list[str]:
    """The customer accounts whose lots an entry may spend."""
    if isinstance(entry, Posting) and not is_system(entry.debit_account_id):
        return [entry.debit_account_id]
    return []


def _first_keys(
    entries: Sequence[Entry], outcomes: list[Outcome]
) -> dict[tuple[str, str, str], int]:
    """Each key the batch's entries carry (``(table, app, key)``), and its first entry."""
    first_of: dict[tuple[str, str, str], int] = {}
    for index, entry in enumerate(entries):
        key = _key(entry)
        if key is not None and outcomes[index] is None:
            first_of.setdefault(key, index)
    return first_of


def _key(entry: Entry) -> tuple[str, str, str] | None:
    if isinstance(entry, Posting):
        return "transfers", entry.app, entry.idempotency_key
    if isinstance(entry, Reservation):
        return "holds", entry.hold.app, entry.hold.idempotency_key
    return None


def _fresh(entry: Entry) -> bool:
    return isinstance(entry, Posting | Reservation) and entry.fresh_key


def _print(entry: Entry) -> str:
    assert isinstance(entry, Posting | Reservation)
    return entry.fingerprint


def _replay(found: Transfer | Hold, stored: str, asked: str, key: str) -> Outcome:
    """The stored result of an earlier identical request, or a conflict if it differed."""
    return found if stored == asked else IdempotencyConflict(key)


def _spend_order(lots: list[_Lot], now: datetime, posting: Posting) -> list[_Lot]:
    """``first_lot`` (a refund's purchase, an expiry's lot); then, for a hold's capture,
    the due lots the hold kept; then by priority, soonest expiry (none last) and age; due
    lots last for any other debit, so a plain charge never spends credits past expiry
    while it can spend others."""
    live = [lot for lot in lots if lot.remaining]
    if len(live) < 2:  # most accounts: nothing to order
        return live
    first = [lot for lot in live if lot.id == posting.first_lot]
    due = sorted(
        (lot for lot in live if lot.due(now) and lot.id != posting.first_lot),
        key=lambda lot: (lot.expires_at, lot.id),
    )
    rest = sorted(
        (lot for lot in live if not lot.due(now) and lot.id != posting.first_lot),
        key=lambda lot: (lot.priority, lot.expires_at is None, lot.expires_at or now, lot.id),
    )
    if posting.hold_id is not None:
        return first + due + rest
    return first + rest + due


def _soonest(lots: list[_Lot]) -> datetime | None:
    """The soonest expiry among live lots (due ones included: they lapse at the next touch)."""
    return min((lot.expires_at for lot in lots if lot.remaining and lot.expires_at), default=None)
