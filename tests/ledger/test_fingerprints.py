"""Every write's fingerprint is computed by one function, ``fingerprint_of``, from the
command's declared fields; and the fingerprints earlier versions stored stay what they
were, so a request retried across an upgrade still answers its replay, not a 409."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from creditsd.gateway.service import UsagePost
from creditsd.kit.idempotency import Command, fingerprint_of
from creditsd.ledger import posting
from creditsd.ledger.commands import CaptureHold, Movement, OpenHold
from creditsd.ledger.lots import LotSpec
from creditsd.webhooks.service import EndpointRequest

WHEN = datetime(2026, 12, 1, tzinfo=UTC)
CHARGE = Movement(
    kind="charge",
    debit_account_id="ada",
    credit_account_id="@revenue",
    amount=1500,
    app="a",
    idempotency_key="k",
    description="d",
    metadata={"m": 1},
)
PRICED = replace(
    CHARGE, description=None, metadata=None, use={"feature": "chat", "quantity": "2.5"}
)
GRANT = Movement(
    kind="grant",
    debit_account_id="@grants",
    credit_account_id="ada",
    amount=100,
    app="a",
    idempotency_key="k",
    description="r",
    lot=LotSpec("promotion", expires_at=WHEN, priority=3, reference="x"),
)
HOLD = OpenHold(
    account_id="ada",
    amount=500,
    expires_in=60,
    app="a",
    idempotency_key="k",
    description="d",
    metadata={"m": 2},
    use={"model": "m", "input_tokens": 3},
    proxy_key_id="pk_1",
)
PLAIN_HOLD = OpenHold(account_id="ada", amount=500, expires_in=60, app="a", idempotency_key="k")
CAPTURE = CaptureHold(
    hold_id="hold_1",
    amount=300,
    app="a",
    idempotency_key="k",
    final=False,
    description="d",
    use={"model": "m"},
)
PLAIN_CAPTURE = CaptureHold(hold_id="hold_1", amount=300, app="a", idempotency_key="k")
USAGE = UsagePost(
    user_id="7",
    model="m",
    cost=Decimal("0.5"),
    gateway_balance_usd=Decimal(3),
    payload={"event": "usage", "userId": 7, "cost": Decimal("0.5"), "sub2api_balance_usd": 3},
    request_id=None,
)
ENDPOINT = EndpointRequest(url="https://x.test/h", events=["a", "b"], description=None)

# What the version before commands (and every version since the fingerprint's formula was
# set) stored for these requests.
STORED = [
    (CHARGE, "a43df356fa423bfb83e715ce713da03c5620a46a89f773beed2a8705daa9c992"),
    (PRICED, "4073d81ed480744191a5a3e0ebfd54b7bf32d977786d475848ce114c8ce66a0b"),
    (GRANT, "aa4d073ab7a428627056296ee478aabd6b10d9cb7a402316c1d3a7aa7396194e"),
    (HOLD, "dffb6bc5c1f6523a8cdc71a8316f5ad73f48f5c2fba22a668cf885634bca6cc8"),
    (PLAIN_HOLD, "12c175856a9b555214eea4cb301bfdbf9eeae7dc84ecc63744661ac0f9786368"),
    (CAPTURE, "e2daf75988aa5e807640397061cb5b9725cea5f15c7815a9203c71c3c98f5788"),
    (PLAIN_CAPTURE, "f4a38680a7c3140e17465793def2b5af54b509f5b31b4ca8caff0d0acfef1468"),
    (USAGE, "a99cedcf2c1fa6aa9ac408cd9ae9ea586252514bd24c000b1bddbf2d1714f511"),
    (ENDPOINT, "21db20b06906fdfd0f9df40f394aad7a15c3be70e0aa95f8145a99464c3af390"),
]


@pytest.mark.parametrize(("command", "stored"), STORED, ids=lambda value: type(value).__name__)
def test_a_fingerprint_stored_by_an_earlier_version_is_computed_again(
    command: Command, stored: str
) -> None:
    assert fingerprint_of(command) == stored


def test_the_engine_s_entries_carry_their_command_s_fingerprint() -> None:
    for command in (CHARGE, HOLD, CAPTURE):
        entry = posting._entry(command, WHEN)
        assert isinstance(entry, posting._Posting | posting._Reservation | posting._Capture)
        assert entry.fingerprint == fingerprint_of(command)


def test_how_a_write_is_carried_out_is_not_what_it_asks() -> None:
    carried_out = replace(CHARGE, app="other", idempotency_key="k2", pricing={"x": 1})
    assert fingerprint_of(carried_out) == fingerprint_of(CHARGE)
    later = replace(CAPTURE, overrun="refuse", finished_at=WHEN, pricing={"rate": 2})
    assert fingerprint_of(later) == fingerprint_of(CAPTURE)
    resent = replace(USAGE, gateway_balance_usd=Decimal(2), request_id="r-1")
    resent = replace(resent, payload={**USAGE.payload, "sub2api_balance_usd": 2})
    assert fingerprint_of(resent) == fingerprint_of(USAGE)


@pytest.mark.parametrize(
    ("command", "changed"),
    [
        (CHARGE, {"amount": 1501}),
        (CHARGE, {"credit_account_id": "@grants"}),
        (CHARGE, {"kind": "adjustment"}),
        (CHARGE, {"metadata": {"m": 2}}),
        (GRANT, {"lot": LotSpec("promotion", expires_at=WHEN, priority=4)}),
        (GRANT, {"lot": None}),
        (PLAIN_CAPTURE, {"final": False}),
        (PLAIN_HOLD, {"proxy_key_id": "pk_2"}),
        (PLAIN_HOLD, {"expires_in": 61}),
    ],
    ids=repr,
)
def test_what_a_write_asks_changes_its_fingerprint(
    command: Command, changed: dict[str, object]
) -> None:
    assert fingerprint_of(replace(command, **changed)) != fingerprint_of(command)


def test_a_priced_amount_is_asked_as_its_use() -> None:
    repriced = replace(PRICED, amount=1700, pricing={"catalog_version": 2})
    assert fingerprint_of(repriced) == fingerprint_of(PRICED)
    assert fingerprint_of(replace(PRICED, use={"feature": "chat", "quantity": "3"})) != (
        fingerprint_of(PRICED)
    )
    assert fingerprint_of(replace(PRICED, use={})) == fingerprint_of(replace(PRICED, use=None))


def test_a_lot_is_asked_without_its_reference() -> None:
    assert GRANT.lot is not None
    other_reference = replace(GRANT, lot=replace(GRANT.lot, reference="y"))
    assert fingerprint_of(other_reference) == fingerprint_of(GRANT)
