"""Two worker processes charging the same queued auto top-ups at once, on PostgreSQL,
against the fake Stripe: each attempt makes one PaymentIntent, its credits are granted once,
and each change of state is told once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from creditsd.autotopup import service
from creditsd.autotopup.models import Card, Rule
from creditsd.inprocess import Ledger
from creditsd.tables import audit_log, auto_topup_attempts, auto_topups, transfers
from tests.conftest import Databases, make_settings, settings_environ
from tests.stripe.conftest import PACKS, stripe_settings
from tests.stripe.fake import FakeStripe

pytestmark = pytest.mark.slow

CREDIT = 10_000
ACCOUNTS = 20
# How Stripe answers the 20 PaymentIntents, in the order they are made.
OUTCOMES = [
    *["succeeded"] * 8,
    *["lost"] * 2,  # succeeded, answered 500: the retry (by either process) gets the answer
    *["processing"] * 3,
    *["declined:insufficient_funds"] * 3,
    *["declined:generic_decline:do_not_try_again"] * 2,
    *["authentication_required"] * 2,
]
# One charge pass after the other until none leaves an attempt queued, then the statuses.
CHARGE_PASSES = """
import asyncio, json, sys
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.stripe.billing import StripeBilling
from creditsd.worker import charge_auto_topups

async def main() -> None:
    async with await Ledger.connect(load_settings()) as ledger:
        billing = StripeBilling(ledger)
        print("ready", flush=True)
        sys.stdin.readline()
        seen = []
        for _ in range(5):
            passed = await charge_auto_topups(ledger, billing)
            seen += passed
            if "queued" not in passed:
                break
        await billing.close()
    print(json.dumps(seen), flush=True)

asyncio.run(main())
"""


async def queue_attempt(ledger: Ledger, n: int) -> None:
    """Account ``acct<n>`` with a rule and a saved card, spent below its threshold: one
    attempt queued."""
    account = f"acct{n}"
    rule = Rule(
        enabled=True,
        threshold=100 * CREDIT,
        target_balance=500 * CREDIT,
        pack=None,
        monthly_cap=5000 * CREDIT,
    )
    card = Card(
        customer_id=f"cus_{n}",
        payment_method_id=f"pm_{n}",
        fingerprint=f"fp_{n}",
        last4="4242",
        brand="visa",
    )
    await ledger.database.write(
        lambda conn, now: service.put_rule(
            conn, account, rule, PACKS, ledger.policy, now, actor="test"
        )
    )
    await ledger.database.write(
        lambda conn, now: service.record_consent(conn, account, card, "test", ledger.policy, now)
    )
    await ledger.grant(account, 150 * CREDIT)
    await ledger.charge(account, 100 * CREDIT)


async def worker(environ: dict[str, str]) -> asyncio.subprocess.Process:
    """A charging process, connected and waiting for a line on its stdin to start."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHARGE_PASSES,
        env={**os.environ, "CREDITSD_CONFIG": os.devnull, **environ},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), 30)
    if ready != b"ready\n":
        _, error = await process.communicate()
        raise AssertionError(error.decode())
    return process


async def rows(ledger: Ledger, query: Any) -> list[Any]:
    async def read(conn: Any, _now: Any) -> list[Any]:
        return list(await conn.execute(query))

    return await ledger.database.read(read)


async def test_two_worker_processes_charge_each_attempt_once(databases: Databases) -> None:
    url = await databases.fresh("postgresql")
    with FakeStripe(prices={"price_1k": 1_000}) as fake:
        sections: dict[str, Any] = {"stripe": stripe_settings(fake), "packs": PACKS}
        async with await Ledger.connect(make_settings(url, **sections)) as ledger:
            for n in range(ACCOUNTS):
                await queue_attempt(ledger, n)
            fake.intent_outcomes = list(OUTCOMES)
            environ = settings_environ(url, **sections)
            processes = [await worker(environ), await worker(environ)]
            ended = await asyncio.gather(
                *(asyncio.wait_for(p.communicate(b"go\n"), 120) for p in processes)
            )
            for process, (_, error) in zip(processes, ended, strict=True):
                assert process.returncode == 0, error.decode()
            seen = [json.loads(out.decode().splitlines()[-1]) for out, _ in ended]

            attempts = await rows(ledger, select(auto_topup_attempts))
            rules = await rows(ledger, select(auto_topups))
            purchases = await rows(ledger, select(transfers).where(transfers.c.kind == "purchase"))
            audited = await rows(
                ledger, select(audit_log.c.action).where(audit_log.c.action.like("auto_topup.%"))
            )

    assert seen[0] and seen[1]  # both processes charged
    asked = Counter(key for _, path, _, key in fake.requests if path == "/v1/payment_intents")
    assert sum(asked.values()) > ACCOUNTS  # and asked Stripe for the same attempts
    intents = [o for o in fake.objects.values() if o["object"] == "payment_intent"]
    assert len(intents) == ACCOUNTS
    by_attempt = Counter(intent["metadata"]["creditsd_auto_topup"] for intent in intents)
    assert set(by_attempt) == {attempt.id for attempt in attempts}
    assert set(by_attempt.values()) == {1}
    assert {attempt.payment_intent_id for attempt in attempts} == {i["id"] for i in intents}
    assert Counter(attempt.status for attempt in attempts) == {
        "succeeded": 10,
        "processing": 3,
        "declined": 5,
        "needs_action": 2,
    }
    succeeded = {a.transfer_id for a in attempts if a.status == "succeeded"}
    assert sorted(t.id for t in purchases) == sorted(succeeded)  # one grant each
    assert Counter(t.credit_account_id for t in purchases).most_common(1)[0][1] == 1
    assert sorted(r.consecutive_declines for r in rules) == [0] * 15 + [1] * 5
    assert Counter(r.state for r in rules) == {"active": 16, "paused": 2, "needs_action": 2}
    assert Counter(action for (action,) in audited) == {
        "auto_topup.updated": ACCOUNTS,
        "auto_topup.consented": ACCOUNTS,
        "auto_topup.succeeded": 10,
        "auto_topup.failed": 5,
        "auto_topup.paused": 2,
        "auto_topup.needs_action": 2,
    }
