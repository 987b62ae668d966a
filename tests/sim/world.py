"""The simulated world: creditsd on a SQLite file, its clients, Stripe, Clerk and a gateway.

It plays a script (``tests/sim/actions.py``) one action at a time, on a clock that only the
script moves: callers of the HTTP API (charges, grants, holds and their captures,
releases and extensions, overdraft changes), proxied model calls (the hold and the patient
capture the proxy makes for a call, through the in-process ``Ledger``: a real proxied call
is settled by a task after its answer has gone, whose timing against the next action the
seed could not decide), Stripe deliveries signed as Stripe signs them (line items asked
of the local fake Stripe), Clerk deliveries signed by Svix, the gateway's usage posts,
the expiry sweep the server runs, clock jumps, and crashes. A crash strikes at a named
point of the next write transaction (``before_write``: in the engine, before its
statements; ``before_commit``: everything written, not committed; ``after_commit``:
committed, the answer lost); the process is then gone: the ledger is closed and opened
again on the same file, and the client (or Stripe, or Clerk) sends the same request again.

Every action's observable outcome (status, error code, amounts, the outcome a webhook
answered) and every account's figures after it go to the event log, which the
determinism test hashes; ids the server draws at random are never logged.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from creditsd.kit import db
from creditsd.kit.errors import CreditsError
from creditsd.ledger import statements
from creditsd.tables import accounts
from tests.clerk.conftest import CLERK_SECRET
from tests.clerk.conftest import deliver as deliver_clerk
from tests.conftest import create_key, make_settings
from tests.gateway.conftest import INTERNAL_SECRET
from tests.sim.actions import PACKS, Action
from tests.stripe.conftest import URLS, stripe_settings
from tests.stripe.conftest import deliver as deliver_stripe
from tests.stripe.fake import FakeStripe

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # the clock of every run starts here
CREDIT = 10_000  # minor units of one credit at the default scale
PERIOD = timedelta(days=30)
PLAN = "cplan_pro"
PLAN_CREDITS = 300
SIGNUP_CREDITS = 50
PRICES = {f"price_{pack}": cents for pack, (_credits, cents) in PACKS.items()}


class SimClock:
    """The run's clock: it moves only when the script says."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Crash(Exception):
    """The process dies here (raised at a fault point)."""


@dataclass
class Purchase:
    """What Stripe will send about one paid checkout, and what the model expects of it."""

    account: str
    credits: int  # minor units
    price: int  # cents
    refund: int  # cents refunded (0: none)
    dispute: str | None  # None, or how the dispute ends: won, lost, open
    events: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Stripe:
    """What Stripe delivered and creditsd acknowledged (the order matters to the model)."""

    purchases: dict[int, Purchase] = field(default_factory=dict)
    handled: list[tuple[int, str]] = field(default_factory=list)  # (purchase, event), first 200


class World:
    """One run: a fresh SQLite file, the app over it, its clients and their memory."""

    def __init__(self, directory: Path, template: Path, fake: FakeStripe) -> None:
        path = directory / "sim.db"
        shutil.copyfile(template, path)
        self.fake = fake
        self.clock = SimClock()
        self.settings = make_settings(
            f"sqlite:///{path}",
            stripe=stripe_settings(fake),
            packs={
                pack: {"credits": credits, "price_id": f"price_{pack}"}
                for pack, (credits, _) in PACKS.items()
            },
            clerk={"webhook_secret": CLERK_SECRET},
            plans={PLAN: {"credits": PLAN_CREDITS}},
            accounts={"signup_grant": SIGNUP_CREDITS},
            gateway={"internal_secret": INTERNAL_SECRET},
        )
        self.log: list[str] = []
        self.problems: list[str] = []  # what the world saw go wrong while playing
        self.holds: list[str] = []  # hold ids, in the order they were opened
        self.answers: dict[tuple[str, str], tuple[Action, int, Any]] = {}  # first success of a key
        self.bodies: dict[Action, dict[str, Any]] = {}  # the body each request was first sent with
        self.stripe = Stripe()
        self.periods: set[tuple[str, int]] = set()  # allowance periods delivered while current
        self.fault: str | None = None
        self.crashed = False
        self.step = 0
        self.ledger: Ledger
        self.api: httpx.AsyncClient
        self.secrets: dict[str, str] = {}

    # The process

    async def start(self) -> None:
        """Open the ledger and the app on the file (again, after a crash)."""
        self.ledger = await Ledger.connect(self.settings, clock=self.clock)
        if not self.secrets:
            self.secrets = {
                scope: await create_key(self.ledger, scope, scope) for scope in ("admin", "app")
            }
        self.app = create_app(self.ledger, sweep=False)
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url="http://creditsd.test",
        )

    async def stop(self) -> None:
        """The process is gone: connections closed, nothing else kept."""
        await self.api.aclose()
        await self.app.state.stripe.close()
        await self.ledger.close()

    @contextmanager
    def faults(self) -> Iterator[None]:
        """Arm the script's crashes: the first write transaction after a ``crash`` action
        dies at its named point."""
        transaction = db.transaction
        write = statements.SqliteStatements.write

        @asynccontextmanager
        async def faulty(engine: Any, **options: Any) -> AsyncIterator[AsyncConnection]:
            point = None if options.get("readonly") or options.get("dry_run") else self.fault
            async with transaction(engine, **options) as conn:
                yield conn
                if point == "before_commit":
                    self._strike()
            if point == "after_commit":
                self._strike()

        async def faulty_write(
            sql: statements.SqliteStatements, conn: AsyncConnection, batch: statements.Written
        ) -> None:
            if self.fault == "before_write":
                self._strike()
            await write(sql, conn, batch)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(db, "transaction", faulty)
            patch.setattr(statements.SqliteStatements, "write", faulty_write)
            yield

    def _strike(self) -> None:
        self.fault, self.crashed = None, True
        raise Crash

    # Playing

    async def play(self, action: Action) -> None:
        """Play one action; after a crash, start again and send the same request again."""
        self.step += 1
        said = await self._attempt(action)
        if self.crashed:
            self.crashed = False
            await self.stop()
            await self.start()
            said = f"crashed, sent again: {await self._attempt(action)}"
        self.log.append(f"{self.step} {action!r} -> {said}")
        self.log += await self._figures()

    async def _attempt(self, action: Action) -> str:
        played: Callable[[Action], Awaitable[str]] = getattr(self, f"_{action.kind}")
        try:
            return await played(action)
        except Crash:
            return "crash"
        except CreditsError as exc:  # an in-process call refused
            return f"refused {exc.code}"

    async def _figures(self) -> list[str]:
        async def read(conn: AsyncConnection) -> list[Any]:
            query = select(
                accounts.c.id,
                accounts.c.balance,
                accounts.c.held,
                accounts.c.debt,
                accounts.c.status,
            )
            return list(
                await conn.execute(
                    query.where(accounts.c.kind == "customer").order_by(accounts.c.id)
                )
            )

        rows = await db.run(self.ledger.engine, read, readonly=True)
        return [
            f"  {row.id} balance={row.balance} held={row.held} debt={row.debt} {row.status}"
            for row in rows
        ]

    def hash(self) -> str:
        """The event log's SHA-256."""
        return hashlib.sha256("\n".join(self.log).encode()).hexdigest()

    # HTTP

    async def _send(
        self,
        method: str,
        path: str,
        scope: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secrets[scope]}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.api.request(method, path, json=body, headers=headers)

    def _answered(
        self, action: Action, response: httpx.Response, figure: Callable[[Any], Any]
    ) -> str:
        """Describe an answer, and hold a keyed request to the first success of its key:
        the same request answers the same, another body is 409."""
        if self.crashed:
            raise Crash
        status = response.status_code
        found = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if status >= 500:
            self._problem("server error", action, f"answered {status}: {response.text[:300]}")
        said = (
            f"{status} {found['error']['code']}"
            if "error" in found
            else f"{status} {figure(found)}"
        )
        if "key" in dict(action.args):
            mark = (action.kind, action["key"])
            first = self.answers.get(mark)
            if first is None and status < 300:
                self.answers[mark] = (action, status, found.get("id"))
            elif first is not None:
                same = first[0] == action
                if same and (status, found.get("id")) != first[1:]:
                    self._problem("replay", action, f"answered {said}, the first {first[1:]}")
                if not same and status != 409:
                    self._problem("key reuse", action, f"answered {said}")
        return said

    def _problem(self, invariant: str, action: Action, said: str) -> None:
        self.problems.append(f"{invariant}: step {self.step}: {action!r} {said}")

    async def _charge(self, action: Action) -> str:
        body = {"account_id": action["account"], "amount": action["credits"]}
        response = await self._send("POST", "/v1/charges", "app", body, action["key"])
        return self._answered(action, response, lambda found: found["amount"])

    async def _grant(self, action: Action) -> str:
        body = self.bodies.get(action)
        if body is None:  # a retry sends the first body again, expiry included
            body = {
                "account_id": action["account"],
                "amount": action["credits"],
                "source": action["source"],
                "reason": "simulated",
            }
            if action["expires_in"] is not None:
                expires_at = self.clock.now + timedelta(seconds=action["expires_in"])
                body["expires_at"] = expires_at.isoformat()
            self.bodies[action] = body
        response = await self._send("POST", "/v1/grants", "admin", body, action["key"])
        return self._answered(action, response, lambda found: found["amount"])

    async def _hold(self, action: Action) -> str:
        body = {
            "account_id": action["account"],
            "amount": action["credits"],
            "expires_in": action["expires_in"],
        }
        response = await self._send("POST", "/v1/holds", "app", body, action["key"])
        said = self._answered(action, response, lambda found: found["amount"])
        if response.status_code == 201:
            self.holds.append(response.json()["id"])
        return said

    def _hold_named(self, action: Action) -> str | None:
        return self.holds[action["hold"] % len(self.holds)] if self.holds else None

    async def _capture(self, action: Action) -> str:
        hold = self._hold_named(action)
        if hold is None:
            return "no hold"
        body = {"amount": action["credits"], "final": action["final"]}
        key = f"capture-{self.step}"
        response = await self._send("POST", f"/v1/holds/{hold}/capture", "app", body, key)
        return self._answered(
            action, response, lambda found: (found["hold"]["status"], found["transfer"]["amount"])
        )

    async def _release(self, action: Action) -> str:
        hold = self._hold_named(action)
        if hold is None:
            return "no hold"
        response = await self._send("POST", f"/v1/holds/{hold}/release", "app")
        return self._answered(action, response, lambda found: found["status"])

    async def _extend(self, action: Action) -> str:
        hold = self._hold_named(action)
        if hold is None:
            return "no hold"
        body = {"expires_in": action["expires_in"]}
        response = await self._send("POST", f"/v1/holds/{hold}/extend", "app", body)
        return self._answered(action, response, lambda found: found["status"])

    async def _overdraft(self, action: Action) -> str:
        body = {"overdraft_limit": action["credits"]}
        response = await self._send("PUT", f"/v1/accounts/{action['account']}", "admin", body)
        return self._answered(action, response, lambda found: found["overdraft_limit"])

    async def _proxy_call(self, action: Action) -> str:
        """A proxied model call as the proxy settles it: a hold on the estimate, then a
        patient final capture of what was delivered (nothing: a release)."""
        hold = await self.ledger.open_hold(
            action["account"],
            action["estimate"] * CREDIT,
            expires_in=600,
            app="proxy",
            idempotency_key=f"proxy-{self.step}",
        )
        if not action["delivered"]:
            released = await self.ledger.release_hold(hold.id, patient=True)
            return f"held {hold.amount}, {released.status}"
        settled, transfer = await self.ledger.capture_hold(
            hold.id,
            action["delivered"] * CREDIT,
            app="proxy",
            finished_at=self.clock.now,
            patient=True,
        )
        return f"held {hold.amount}, {settled.status} {transfer.amount}"

    async def _gateway_usage(self, action: Action) -> str:
        cost = action["cents"] / 100
        body = self.bodies.get(action)
        if body is None:  # a retry sends the first body again
            body = self.bodies[action] = {
                "event": "usage",
                "userId": int(action["account"]),
                "model": "gpt-4o-mini",
                "inputTokens": 100,
                "outputTokens": 200,
                "cacheReadTokens": 0,
                "cacheWriteTokens": 0,
                "cost": cost,
                "totalCost": cost,
                "rateMultiplier": 1,
                "timestamp": int(self.clock.now.timestamp() * 1000),
            }
        response = await self.api.post(
            "/api/internal/webhooks/usage",
            json=body,
            headers={"X-Internal-Secret": INTERNAL_SECRET, "Idempotency-Key": action["key"]},
        )
        if self.crashed:
            raise Crash
        if response.status_code >= 500:
            self._problem("server error", action, f"answered {response.status_code}")
        return f"{response.status_code} {response.json().get('code')}"

    # Money in

    async def _purchase(self, action: Action) -> str:
        """A buyer checks out a pack and pays; Stripe's events about it are made now (and
        delivered when the script says)."""
        body = {"account_id": action["account"], "pack": action["pack"], **URLS}
        response = await self._send(
            "POST", "/v1/checkout-sessions", "app", body, f"checkout-{action['number']}"
        )
        if self.crashed:
            raise Crash
        if response.status_code != 201:
            self._problem("checkout", action, f"answered {response.status_code}")
            return str(response.status_code)
        credits, price = PACKS[action["pack"]]
        purchase = Purchase(
            action["account"], credits * CREDIT, price, action["refund"], action["dispute"]
        )
        session = self.fake.complete_session(response.json()["id"])
        purchase.events["checkout.session.completed"] = self.fake.event(
            "checkout.session.completed", session
        )
        charge = self.fake.objects[session["payment_intent"]]["latest_charge"]
        if purchase.refund:
            refunded = self.fake.refund(charge, purchase.refund)
            purchase.events["charge.refunded"] = self.fake.event("charge.refunded", refunded)
        if purchase.dispute is not None:
            dispute = self.fake.dispute(charge)
            purchase.events["charge.dispute.created"] = self.fake.event(
                "charge.dispute.created", dispute
            )
            closed = {**dispute, "status": purchase.dispute}
            purchase.events["charge.dispute.closed"] = self.fake.event(
                "charge.dispute.closed", closed
            )
        self.stripe.purchases[action["number"]] = purchase
        return "paid"

    def _refused_delivery(self, action: Action, response: httpx.Response) -> str | None:
        """What a webhook delivery that was not answered 200 said (a problem), else None;
        a crash during it ends the step."""
        if self.crashed:
            raise Crash
        if response.status_code == 200:
            return None
        self._problem("delivery", action, f"answered {response.status_code}: {response.text[:300]}")
        return str(response.status_code)

    async def _stripe(self, action: Action) -> str:
        purchase = self.stripe.purchases.get(action["purchase"])
        if purchase is None:
            return "never bought"
        response = await deliver_stripe(self.api, purchase.events[action["event"]])
        if refused := self._refused_delivery(action, response):
            return refused
        # Stripe stops sending an event once answered 200: from then on it must count,
        # whatever the outcome said (a "duplicate" that was never handled would be lost).
        if (action["purchase"], action["event"]) not in self.stripe.handled:
            self.stripe.handled.append((action["purchase"], action["event"]))
        return f"200 {response.json()['outcome']}"

    async def _clerk(self, action: Action) -> str:
        account, kind = action["account"], action["event"]
        if kind == "user.created":
            data: dict[str, Any] = {
                "object": "user",
                "id": account,
                "email_addresses": [],
                "primary_email_address_id": None,
            }
        else:
            start = START + PERIOD * action["period"]
            item = {
                "object": "subscription_item",
                "id": f"csub_item_{account}_{action['period']}",
                "status": "active",
                "plan_id": PLAN,
                "plan": {"id": PLAN},
                "period_start": int(start.timestamp() * 1000),
                "period_end": int((start + PERIOD).timestamp() * 1000),
                "payer": {"id": f"cpayer_{account}", "user_id": account, "organization_id": ""},
            }
            if kind == "subscription.updated":
                data = {
                    "object": "commerce_subscription",
                    "id": f"csub_{account}",
                    "status": "active",
                    "items": [item],
                    "payer": item["payer"],
                }
            else:
                data = item
        event = {"object": "event", "type": kind, "data": data}
        response = await deliver_clerk(self.api, event, message_id=action["msg"])
        if refused := self._refused_delivery(action, response):
            return refused
        if kind != "user.created" and START + PERIOD * (action["period"] + 1) > self.clock.now:
            self.periods.add((account, action["period"]))
        return f"200 {response.json()['outcome']}"

    # Time and the server's own work

    async def _note(self, action: Action) -> str:
        return "noted"

    async def _clock(self, action: Action) -> str:
        """Time passes; the server's sweeper runs on its timer meanwhile."""
        self.clock.now += timedelta(seconds=action["seconds"])
        if action["seconds"] < self.settings.holds.sweep_interval:
            return self.clock.now.isoformat()
        return f"{self.clock.now.isoformat()}, {await self._sweep(action)}"

    async def _sweep(self, action: Action) -> str:
        """What the server's sweeper does on its timer."""
        holds = lots = 0
        while closed := await self.ledger.expire_holds():
            holds += closed
        while lapsed := await self.ledger.expire_lots():
            lots += lapsed
        return f"{holds} holds expired, {lots} lots lapsed"

    async def _crash(self, action: Action) -> str:
        self.fault = action["point"]
        return "armed"
