"""Scheduled reconciliation: a drift is found by the next run, recorded once (log, counter,
webhook, audit), repaired only by an operator, and every process shows the same figures."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.integrity import checkpoints
from creditsd.integrity import service as integrity
from creditsd.kit import db, jsonio
from creditsd.worker import reconcile_once, verify_chain
from tests.conftest import Clock, LedgerFactory, client_for, create_key
from tests.integrity.conftest import audit_actions, drift_messages, drifts, execute, scraped
from tests.test_cli import run as run_cli

CREDIT = 10_000
BALANCE_DRIFTS = 'creditsd_invariant_violations_total{invariant="balance_matches_transfers"}'
OPEN_BALANCE_DRIFTS = 'creditsd_invariant_drifts_open{invariant="balance_matches_transfers"}'


async def subscribe(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/webhook-endpoints",
        json={"url": "https://ops.example/hooks", "events": ["ledger.drift_detected"]},
    )
    assert response.status_code == 201, response.text


async def test_a_drift_is_found_once_sent_once_audited_and_repaired_by_fix(
    ledger: Ledger, api: httpx.AsyncClient, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    await subscribe(api)
    await ledger.grant("alice", 100 * CREDIT)
    await ledger.charge("alice", 10 * CREDIT)
    first = await reconcile_once(ledger)
    assert first is not None and first.violations == [] and first.full
    clock.advance(300)

    await execute(ledger, "UPDATE accounts SET balance = balance + 5 WHERE id = 'alice'")
    with caplog.at_level(logging.ERROR, "creditsd.integrity"):
        found = await reconcile_once(ledger)  # the next run, an incremental one
    assert found is not None and not found.full
    assert [(d.invariant, d.subject) for d in found.found] == [
        ("balance_matches_transfers", "alice")
    ]
    said = [r.getMessage() for r in caplog.records if "balance_matches_transfers" in r.getMessage()]
    assert len(said) == 1
    assert "stored balance 900005, its transfers sum to 900000" in said[0]

    for _ in range(2):  # later runs see it again, and record nothing more
        clock.advance(300)
        caplog.clear()
        with caplog.at_level(logging.ERROR, "creditsd.integrity"):
            again = await reconcile_once(ledger)
        assert again is not None and again.found == [] and len(again.violations) == 1
        assert caplog.records == []
    figures = await scraped(api)
    assert figures[BALANCE_DRIFTS] == 1
    assert figures[OPEN_BALANCE_DRIFTS] == 1
    (message,) = await drift_messages(ledger)
    assert message.payload["data"]["invariant"] == "balance_matches_transfers"
    assert message.payload["data"]["subject"] == "alice"
    assert await audit_actions(ledger, "alice") == [
        ("local", "grant"),
        ("reconcile", "drift.detected"),
    ]

    code, out, _err = await asyncio.to_thread(
        run_cli, ledger.settings.database.url, "reconcile", "--fix"
    )
    assert code == 0, out
    assert "rebuilt 1 account(s)" in out
    assert (await audit_actions(ledger, "alice"))[-1][1] == "account.rebuild"
    assert [d.resolved_at is not None for d in await drifts(ledger)] == [True]
    clock.advance(300)
    after = await reconcile_once(ledger)
    assert after is not None and after.violations == [] and after.found == []
    figures = await scraped(api)
    assert figures[BALANCE_DRIFTS] == 1  # counted once, ever
    assert figures[OPEN_BALANCE_DRIFTS] == 0
    assert len(await drift_messages(ledger)) == 1


async def test_a_drift_repaired_that_comes_back_counts_again(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("alice", 10 * CREDIT)
    await reconcile_once(ledger)
    for expected in (1, 2):
        await execute(ledger, "UPDATE accounts SET held = 3 WHERE id = 'alice'")
        clock.advance(300)
        run = await reconcile_once(ledger)
        assert run is not None and [d.invariant for d in run.found] == ["held_matches_holds"]
        await ledger.rebuild_account("alice", actor="ops")
        held = [d for d in await drifts(ledger) if d.invariant == "held_matches_holds"]
        assert len(held) == expected and all(d.resolved_at is not None for d in held)


async def test_a_drift_that_goes_away_by_itself_is_closed(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("alice", 10 * CREDIT)
    await reconcile_once(ledger)
    await execute(ledger, "UPDATE accounts SET held = 3 WHERE id = 'alice'")
    clock.advance(300)
    assert (run := await reconcile_once(ledger)) is not None and len(run.found) == 1
    await execute(ledger, "UPDATE accounts SET held = 0 WHERE id = 'alice'")
    clock.advance(300)
    assert (run := await reconcile_once(ledger)) is not None
    assert [d.invariant for d in run.resolved] == ["held_matches_holds"]
    assert (await drifts(ledger))[0].resolved_at == clock.now


async def test_an_old_transfer_edited_is_reported_and_verify_names_it(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("alice", 100 * CREDIT)
    old = await ledger.charge("alice", 10 * CREDIT)
    clock.advance(120)  # settled: the next run chains it
    first = await reconcile_once(ledger)
    assert first is not None and [link.transfers for link in first.checkpoints] == [2]
    for n in range(3):
        await ledger.charge("alice", CREDIT, idempotency_key=f"later-{n}")
    clock.advance(300)
    second = await reconcile_once(ledger)
    assert second is not None and [link.transfers for link in second.checkpoints] == [3]
    code, out, _err = await asyncio.to_thread(run_cli, ledger.settings.database.url, "verify")
    assert code == 0
    assert "the checkpoint chain is whole: 2 checkpoint(s) over 5 transfer(s)" in out

    await execute(ledger, "UPDATE transfers SET amount = amount + 1 WHERE id = :id", id=old.id)
    clock.advance(300)
    third = await reconcile_once(ledger)
    assert third is not None and not third.full
    chain = [v for v in third.violations if v.invariant == "checkpoint_chain"]
    assert [(v.subject, v.detail) for v in chain] == [
        (old.id, f"transfer {old.id} no longer matches checkpoint 1")
    ]
    code, out, _err = await asyncio.to_thread(run_cli, ledger.settings.database.url, "verify")
    assert code == 1
    assert (
        f"the checkpoint chain is broken: transfer {old.id} no longer matches checkpoint 1"
        in " ".join(out.split())
    )


async def test_verify_names_a_deleted_transfer_and_a_changed_checkpoint(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("alice", 100 * CREDIT)
    clock.advance(120)
    await reconcile_once(ledger)
    await execute(ledger, "UPDATE integrity_checkpoints SET total = total + 1")
    report = await verify_chain(ledger)
    assert report.broken is not None and report.broken.transfer_id is None
    assert report.broken.detail == "checkpoint 1 no longer matches its transfers"


async def test_verify_on_a_ledger_without_checkpoints(database_url: str) -> None:
    code, out, _err = await asyncio.to_thread(run_cli, database_url, "verify")
    assert code == 0
    assert "no checkpoint yet" in out


async def test_one_process_at_a_time(make_ledger: LedgerFactory, clock: Clock) -> None:
    one, other = await make_ledger(), await make_ledger()
    await db.run(one.engine, lambda conn: integrity.take_lease(conn, "run_elsewhere", clock.now))
    assert await reconcile_once(other) is None  # another process is running it
    clock.advance(integrity.LEASE_SECONDS + 1)  # that process died mid-run
    assert await reconcile_once(other) is not None


async def test_two_processes_at_once_do_the_work_once(
    make_ledger: LedgerFactory, clock: Clock
) -> None:
    one, other = await make_ledger(), await make_ledger()
    await one.grant("alice", 10 * CREDIT)
    await execute(one, "UPDATE accounts SET held = 3 WHERE id = 'alice'")
    runs = await asyncio.gather(*(reconcile_once(ledger) for ledger in (one, other) * 3))
    done = [run for run in runs if run is not None]
    assert sum(len(run.found) for run in done) == 1
    assert len(await drifts(one)) == 1


async def test_metrics_show_the_same_figures_in_every_process(
    make_ledger: LedgerFactory, clock: Clock
) -> None:
    worker, api_process = await make_ledger(), await make_ledger()
    await worker.grant("alice", 10 * CREDIT)
    opened = await worker.open_hold("alice", CREDIT, expires_in=60)
    clock.advance(60 + 5 + 60 + 1)  # past its expiry, the sweep's interval and a minute
    run = await reconcile_once(worker)
    assert run is not None and [(d.invariant, d.subject) for d in run.found] == [
        ("hold_past_expiry", opened.id)
    ]
    async with client_for(api_process, await create_key(api_process, "read")) as api:
        figures = await scraped(api)
    assert figures['creditsd_invariant_violations_total{invariant="hold_past_expiry"}'] == 1
    assert figures['creditsd_invariant_violations_total{invariant="checkpoint_chain"}'] == 0
    assert figures["creditsd_holds_overdue"] == 1
    assert figures["creditsd_reconcile_last_success_timestamp_seconds"] == clock.now.timestamp()
    assert figures["creditsd_reconcile_duration_seconds"] >= 0


async def test_the_webhook_payload(ledger: Ledger, api: httpx.AsyncClient, clock: Clock) -> None:
    await subscribe(api)
    await ledger.grant("alice", 10 * CREDIT)
    await execute(ledger, "UPDATE accounts SET held = 3 WHERE id = 'alice'")
    run = await reconcile_once(ledger)
    assert run is not None
    (message,) = await drift_messages(ledger)
    (drift,) = run.found
    assert message.account_id == "alice"
    assert jsonio.loads(jsonio.dumps(message.payload)) == {
        "type": "ledger.drift_detected",
        "timestamp": jsonio.format_timestamp(clock.now),
        "data": {
            "drift_id": drift.id,
            "invariant": "held_matches_holds",
            "subject": "alice",
            "detail": "stored held 3, its open holds reserve 0 (minor units)",
            "detected_at": jsonio.format_timestamp(clock.now),
        },
    }


async def test_a_long_history_is_chained_in_links_of_bounded_size(
    ledger: Ledger, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "LINK_TRANSFERS", 2)
    await ledger.grant("alice", 100 * CREDIT)  # alone at its moment
    clock.advance(1)
    for n in range(3):  # three transfers of one moment stay in one link
        await ledger.charge("alice", CREDIT, idempotency_key=f"same-moment-{n}")
    clock.advance(1)
    await ledger.charge("alice", CREDIT, idempotency_key="last")
    clock.advance(120)
    run = await reconcile_once(ledger)
    assert run is not None
    assert [link.transfers for link in run.checkpoints] == [4, 1]
    assert [link.number for link in run.checkpoints] == [1, 2]
    report = await verify_chain(ledger)
    assert report.broken is None and report.transfers == 5
    assert report.head == run.checkpoints[-1]


async def test_a_transfer_is_chained_once_it_has_settled(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("alice", 100 * CREDIT)
    clock.advance(checkpoints.SETTLE_SECONDS - 1)  # it might still have company committing
    early = await reconcile_once(ledger)
    assert early is not None and early.checkpoints == []
    clock.advance(2)
    settled = await reconcile_once(ledger)
    assert settled is not None and [link.transfers for link in settled.checkpoints] == [1]


async def test_verify_names_a_transfer_back_dated_into_a_checkpoint_and_one_deleted(
    ledger: Ledger, clock: Clock
) -> None:
    await ledger.grant("alice", 100 * CREDIT)
    late = await ledger.grant("bob", 100 * CREDIT)
    clock.advance(120)
    await reconcile_once(ledger)
    await execute(
        ledger,
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, app,"
        " idempotency_key, fingerprint, created_at) SELECT 'tr_backdated', kind,"
        " debit_account_id, credit_account_id, amount, app, 'backdated', fingerprint,"
        " created_at FROM transfers WHERE id = :id",
        id=late.id,
    )
    report = await verify_chain(ledger)
    assert report.broken is not None
    assert report.broken.detail == (
        "transfer tr_backdated was not there when checkpoint 1 was written"
    )
    await execute(ledger, "DELETE FROM transfers WHERE id = 'tr_backdated'")
    await execute(ledger, "DELETE FROM lots WHERE transfer_id = :id", id=late.id)
    await execute(ledger, "DELETE FROM transfers WHERE id = :id", id=late.id)
    report = await verify_chain(ledger)
    assert report.broken is not None
    assert report.broken.detail == (
        f"transfer {late.id} of checkpoint 1 is gone (deleted, or its created_at changed)"
    )


async def test_what_the_totals_cannot_see_waits_for_the_full_pass(
    make_ledger: LedgerFactory, clock: Clock
) -> None:
    ledger = await make_ledger(reconcile={"full_pass_seconds": 3600})
    for account in ("alice", "bob"):
        await ledger.grant(account, 10 * CREDIT)
    clock.advance(120)  # the grants are behind the runs to come
    await reconcile_once(ledger)
    await execute(ledger, "UPDATE accounts SET balance = balance + 5 WHERE id = 'alice'")
    await execute(ledger, "UPDATE accounts SET balance = balance - 5 WHERE id = 'bob'")
    clock.advance(300)
    quiet = await reconcile_once(ledger)  # every total still agrees, neither account moved
    assert quiet is not None and not quiet.full and quiet.violations == []
    clock.advance(3600)
    full = await reconcile_once(ledger)
    assert full is not None and full.full
    assert [(d.invariant, d.subject) for d in full.found] == [
        ("balance_matches_transfers", "alice"),
        ("balance_matches_transfers", "bob"),
    ]


async def test_a_drift_on_an_account_nobody_touched_shows_in_the_totals(
    ledger: Ledger, clock: Clock
) -> None:
    for account in ("alice", "bob"):
        await ledger.grant(account, 10 * CREDIT)
    clock.advance(120)  # the grants are behind the runs to come
    await reconcile_once(ledger)
    await execute(ledger, "UPDATE lots SET remaining = remaining - 1 WHERE account_id = 'bob'")
    clock.advance(300)
    run = await reconcile_once(ledger)
    assert run is not None and not run.full
    assert [(d.invariant, d.subject) for d in run.found] == [("lots_match_balance", "bob")]
