"""The simulation's script: every action of one run, drawn up front from one seed.

Everything random is decided here, by one ``random.Random(seed)``: which action comes next,
its arguments, which earlier request a client retries, when (and how often) a Stripe or
Clerk delivery arrives, where a crash strikes. The world only plays the list, so a list
with actions removed (what the shrinker tries) plays just as deterministically. Actions
that name an earlier thing do so by its index (the n-th hold, the n-th purchase), resolved
when played; a reference to something that was never made plays as a no-op.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

ACCOUNTS = ("101", "102", "103")
PACKS = {"small": (100, 1_000), "large": (500, 4_500)}  # credits, price in cents
FAULT_POINTS = ("before_write", "before_commit", "after_commit")
DAY = 86_400
CLOCK_JUMPS = (30, 600, 3_600, 6 * 3_600, DAY, 3 * DAY)


@dataclass(frozen=True)
class Action:
    """One step: its kind and its arguments (sorted, so it prints and hashes stably)."""

    kind: str
    args: tuple[tuple[str, Any], ...] = ()

    def __getitem__(self, name: str) -> Any:
        return dict(self.args)[name]

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(f'{name}={value!r}' for name, value in self.args)})"


def act(kind: str, **args: Any) -> Action:
    """An action of ``kind`` with ``args``."""
    return Action(kind, tuple(sorted(args.items())))


class _Script:
    """Draws a run's actions; deliveries are scheduled at later steps as they are drawn."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.actions: list[Action] = []
        self.later: list[tuple[int, int, Action]] = []  # (due step, order drawn, delivery)
        self.sent: dict[str, list[Action]] = {}  # requests a client may send again
        self.purchases = 0
        self.messages = 0
        self.keys = 0

    def draw(self, steps: int) -> list[Action]:
        for step in range(steps):
            self._deliver_due(step)
            self.actions.append(self._next())
        self._deliver_due(steps + 10**6)
        return self.actions

    def _deliver_due(self, step: int) -> None:
        due = sorted(entry for entry in self.later if entry[0] <= step)
        self.later = [entry for entry in self.later if entry[0] > step]
        self.actions += [delivery for _due, _order, delivery in due]

    def _schedule(self, delivery: Action, *, within: int, copies: int = 1) -> None:
        """Deliver ``delivery`` ``copies`` times, each after a delay of up to ``within``
        steps: delays are independent, so deliveries of one object arrive in any order."""
        step = len(self.actions)
        for _ in range(copies):
            due = step + self.rng.randint(0, within)
            self.later.append((due, len(self.later) + step * 1_000, delivery))

    def _key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def _again_or(self, kind: str, fresh: Action) -> Action:
        """Mostly ``fresh``; sometimes a retry of an earlier request of the same kind (same
        key, same body), rarely its key with another body (a conflict)."""
        earlier = self.sent.setdefault(kind, [])
        roll = self.rng.random()
        if earlier and roll < 0.25:
            return self.rng.choice(earlier)
        if earlier and roll < 0.28:
            return act(kind, **{**dict(fresh.args), "key": self.rng.choice(earlier)["key"]})
        earlier.append(fresh)
        return fresh

    def _next(self) -> Action:
        rng = self.rng
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        account = rng.choice(ACCOUNTS)
        if kind == "charge":
            fresh = act(kind, account=account, credits=rng.randint(1, 60), key=self._key())
            return self._again_or(kind, fresh)
        if kind == "grant":
            source = rng.choice(("promotion", "promotion", "adjustment"))
            expires_in = (
                rng.choice((None, 120, 3_600, DAY, 3 * DAY)) if source == "promotion" else None
            )
            fresh = act(
                kind,
                account=account,
                credits=rng.randint(10, 200),
                source=source,
                expires_in=expires_in,
                key=self._key(),
            )
            return self._again_or(kind, fresh)
        if kind == "hold":
            expires_in = rng.choice((60, 3_600, DAY, 2 * DAY))
            fresh = act(
                kind,
                account=account,
                credits=rng.randint(5, 100),
                expires_in=expires_in,
                key=self._key(),
            )
            return self._again_or(kind, fresh)
        if kind == "capture":
            return act(
                kind, hold=rng.randrange(64), credits=rng.randint(1, 120), final=rng.random() < 0.8
            )
        if kind in {"release", "extend"}:
            return act(kind, hold=rng.randrange(64), expires_in=rng.choice((600, DAY, 2 * DAY)))
        if kind == "proxy_call":
            estimate = rng.randint(5, 60)
            delivered = rng.randint(0, estimate * 3 // 2)
            return act(kind, account=account, estimate=estimate, delivered=delivered)
        if kind == "overdraft":
            return act(kind, account=account, credits=rng.choice((0, 0, 50, 200)))
        if kind == "gateway_usage":
            fresh = act(kind, account=account, cents=rng.randint(1, 600), key=self._key())
            return self._again_or(kind, fresh)
        if kind == "purchase":
            return self._purchase(account)
        if kind == "signup":
            self.messages += 1
            message = act("clerk", account=account, event="user.created", msg=f"m{self.messages}")
            self._schedule(message, within=6, copies=rng.choice((1, 1, 2)))
            return act("note", said=f"clerk user {account} signs up")
        if kind == "subscription":
            period = rng.randrange(4)
            for event in ("subscriptionItem.active", "subscription.updated"):
                self.messages += 1
                message = act(
                    "clerk", account=account, event=event, msg=f"m{self.messages}", period=period
                )
                self._schedule(message, within=6, copies=rng.choice((1, 1, 2)))
            return act("note", said=f"clerk period {period} of {account} starts")
        if kind == "clock":
            return act(kind, seconds=rng.choice(CLOCK_JUMPS))
        if kind == "crash":
            return act(kind, point=rng.choice(FAULT_POINTS))
        return act(kind)  # sweep

    def _purchase(self, account: str) -> Action:
        """A paid checkout, and what Stripe will send of it: the completed session, maybe
        a refund or a dispute, each delayed, duplicated and so reordered at will."""
        rng = self.rng
        self.purchases += 1
        number = self.purchases
        pack = rng.choice(list(PACKS))
        price = PACKS[pack][1]
        refund = rng.choice((0, price // 4, price)) if rng.random() < 0.35 else 0
        dispute = rng.choice(("won", "lost", "open")) if not refund and rng.random() < 0.2 else None
        deliver = act("stripe", purchase=number, event="checkout.session.completed")
        self._schedule(deliver, within=5, copies=rng.choice((1, 1, 2)))
        if refund:
            self._schedule(act("stripe", purchase=number, event="charge.refunded"), within=8)
        if dispute is not None:
            created = act("stripe", purchase=number, event="charge.dispute.created")
            self._schedule(created, within=8, copies=rng.choice((1, 2)))
            if dispute != "open":
                closed = act("stripe", purchase=number, event="charge.dispute.closed")
                self.later.append((len(self.actions) + 10, len(self.later), closed))
        return act(
            "purchase", account=account, pack=pack, number=number, refund=refund, dispute=dispute
        )


WEIGHTS = {
    "charge": 22,
    "grant": 10,
    "hold": 10,
    "capture": 8,
    "release": 4,
    "extend": 4,
    "proxy_call": 6,
    "overdraft": 3,
    "gateway_usage": 8,
    "purchase": 6,
    "signup": 3,
    "subscription": 3,
    "sweep": 4,
    "clock": 7,
    "crash": 3,
}


def script(seed: int, steps: int) -> list[Action]:
    """The actions of seed ``seed``: ``steps`` drawn, plus the deliveries they scheduled."""
    return _Script(seed).draw(steps)
