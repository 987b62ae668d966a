"""The "why" of a transaction, read from price stamps of any shape: the well-formed parts
are explained, anything else is left out, and nothing in a stamp can break the page."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from creditsd.kit.money import Money
from creditsd.ledger.models import REVENUE, Transfer
from creditsd.web import billing

MONEY = Money(4)
PRICE = {
    "catalog_version": 3,
    "kind": "model",
    "model": "openai/gpt-4o",
    "usd": Decimal("0.0075"),
    "credits_per_usd": 100,
    "markup_percent": 20,
    "rate_multiplier": 1,
    "lines": [{"description": "1000 input tokens × 2.5 USD/1M"}],
    "exact": Decimal("0.9"),
    "rounding": "up",
    "amount": Decimal("0.9"),
}


def _charge(pricing: Any, *, app: str = "web") -> Transfer:
    return Transfer(
        id="tr_1",
        kind="charge",
        debit_account_id="ada",
        credit_account_id=REVENUE,
        amount=9_000,
        app=app,
        idempotency_key="k",
        hold_id=None,
        description="a chat",
        metadata=None,
        debit_balance_after=1_000,
        debit_available_after=1_000,
        credit_balance_after=None,
        credit_available_after=None,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        pricing=pricing,
    )


def test_a_whole_stamp_is_explained() -> None:
    shown = billing.entry(_charge(PRICE), "ada", MONEY)
    assert shown.detail == "openai/gpt-4o"
    assert shown.lines == ["1000 input tokens × 2.5 USD/1M"]
    assert shown.why == [
        "Priced by version 3 of the price list: 0.9 credits exactly, rounded up to 0.9.",
        "Model prices are in US dollars (0.0075 USD here), at 100 credits a dollar, plus a "
        "20% markup, times a rate of 1.",
    ]


@pytest.mark.parametrize(
    ("odd", "why"),
    [
        ({"rounding": None}, []),
        ({"rounding": "sideways"}, []),
        ({"catalog_version": True}, []),
        ({"catalog_version": "3"}, []),
        ({"exact": "0.9"}, []),
        ({"amount": [1]}, []),
        ({"amount": Decimal("1e999999")}, []),
        ({"exact": Decimal("1e-999999")}, []),
        ({"exact": Decimal("NaN")}, []),
        ({"markup_percent": "20"}, [0]),
        ({"kind": {"model": True}}, [0]),
    ],
)
def test_an_odd_part_of_a_stamp_is_left_out(odd: dict[str, Any], why: list[int]) -> None:
    whole = billing.entry(_charge(PRICE), "ada", MONEY).why
    shown = billing.entry(_charge({**PRICE, **odd}), "ada", MONEY)
    assert shown.why == ([whole[i] for i in why] or ["Reason given: a chat."])


@pytest.mark.parametrize(
    ("pricing", "lines"),
    [
        ({"lines": "1000 tokens"}, []),
        ({"lines": {"description": "x"}}, []),
        ({"lines": [7, None, {"description": 5}, {"description": "kept"}, "x"]}, ["kept"]),
    ],
)
def test_only_lines_with_a_description_are_listed(pricing: Any, lines: list[str]) -> None:
    assert billing.entry(_charge(pricing), "ada", MONEY).lines == lines


@pytest.mark.parametrize(
    ("settlement", "why"),
    [
        ("settled", []),
        ({"outcome": "within_hold"}, []),
        ({"estimate": 5, "actual": "3"}, []),
        (
            {"estimate": 5, "actual": 3, "outcome": 1, "released": True},
            ["5 credits were set aside when the work started; it used 3."],
        ),
        (
            {"estimate": 5, "actual": 3, "outcome": "within_hold", "released": 2},
            [
                "5 credits were set aside when the work started; it used 3. The work cost no "
                "more than was set aside.",
                "2 credits went back to you.",
            ],
        ),
    ],
)
def test_a_settlement_is_told_only_from_its_figures(settlement: Any, why: list[str]) -> None:
    shown = billing.entry(_charge({"settlement": settlement}), "ada", MONEY)
    assert shown.why == (why or ["Reason given: a chat."])


@pytest.mark.parametrize("pricing", [None, [], "stamp", 7, {"model": 7}])
def test_a_stamp_that_is_no_object_explains_nothing(pricing: Any) -> None:
    shown = billing.entry(_charge(pricing), "ada", MONEY)
    assert (shown.detail, shown.lines, shown.why) == ("a chat", [], ["Reason given: a chat."])


def test_a_gateway_s_stamp_is_never_read_as_creditsd_s_price() -> None:
    stamp = {**PRICE, "source": "catalog", "cost_usd": Decimal("0.003"), "credits_per_usd": 100}
    shown = billing.entry(_charge(stamp, app="gateway"), "ada", MONEY)
    assert shown.lines == []
    assert shown.why == ["Reported by the gateway: 0.003 USD at 100 credits a dollar."]
