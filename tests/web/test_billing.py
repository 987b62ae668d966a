"""A transaction as its customer reads it: what it was for by name, how much of it with
plurals that agree, why it cost that without the seller's markup or the ledger's words, read
from price stamps of any shape (the well-formed parts explained, anything else left out)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from creditsd.kit.money import Money
from creditsd.ledger.models import REVENUE, LotPart, Transfer
from creditsd.price_settings import PricingSettings
from creditsd.pricing.catalog import Catalog, FeatureUse, TokenUse
from creditsd.web import billing, stamps
from creditsd.web.pages import counted, moment

MONEY = Money(4)
CATALOG = PricingSettings.model_validate(
    {
        "markup_percent": 20,
        "features": {"chat_message": {"price": 10}, "ai_text_chat": {"price": 1}},
        "meters": {
            "video_render": {"price": 10, "unit": "second", "display_name": "Video render"},
            "power": {"price": "0.3333", "unit": "kWh", "unit_plural": "kWh"},
        },
        "models": {"openai/gpt-4o": {"input": "2.50", "output": "10.00", "display_name": "GPT-4o"}},
    }
)
PRICES = Catalog(3, CATALOG)
SELLER_WORDS = re.compile(r"markup|multiplier|version|catalog|USD|dollar|%|tr_|hold", re.I)
LEDGER_WORDS = re.compile(r"\b(charge|capture|clawback|chat_message|video_render)\b")


def _charge(pricing: Any, *, app: str = "web", kind: str = "charge", **fields: Any) -> Transfer:
    return Transfer(
        id="tr_1",
        kind=kind,
        debit_account_id="ada",
        credit_account_id=REVENUE,
        amount=9_000,
        app=app,
        idempotency_key="k",
        hold_id=None,
        description=fields.pop("description", "a chat"),
        metadata=fields.pop("metadata", None),
        debit_balance_after=1_000,
        debit_available_after=1_000,
        credit_balance_after=None,
        credit_available_after=None,
        created_at=datetime(2026, 12, 1, 4, 41, tzinfo=UTC),
        pricing=pricing,
    )


def _priced(use: FeatureUse | TokenUse) -> billing.Entry:
    breakdown = PRICES.price(use, MONEY).breakdown
    return billing.entry(_charge(breakdown), "ada", MONEY, CATALOG)


def _said(shown: billing.Entry) -> str:
    return " ".join(filter(None, [shown.title, shown.detail, shown.used, *shown.why, *shown.parts]))


def test_a_model_call_reads_as_its_tokens_and_what_each_cost_the_customer() -> None:
    shown = _priced(TokenUse("openai/gpt-4o", input_tokens=1_234, output_tokens=567))
    assert (shown.title, shown.detail) == ("Used", "GPT-4o")
    assert shown.used == "1,234 input tokens, 567 output tokens"
    # 1,234 × 2.50 / 10⁶ USD × 100 credits a dollar × 1.2: the markup is in, never named
    assert shown.parts == [
        "1,234 input tokens: 0.3702 credits",
        "567 output tokens: 0.6804 credits",
    ]
    assert shown.why == ["Reason given: a chat."]  # 1.0506 exactly: nothing was rounded
    assert not SELLER_WORDS.search(_said(shown)) and not LEDGER_WORDS.search(_said(shown))


def test_one_of_each_is_singular() -> None:
    one = _priced(TokenUse("openai/gpt-4o", input_tokens=1, output_tokens=1_000_000))
    assert one.used == "1 input token, 1,000,000 output tokens"
    second = _priced(FeatureUse("video_render", Decimal(1)))
    assert second.used == "1 second at 10 credits a second"
    assert _priced(FeatureUse("ai_text_chat", Decimal(2))).used == "2 uses at 1 credit each"
    assert _priced(FeatureUse("chat_message")).used is None  # one use: its name says it


def test_a_meter_reads_in_its_unit_and_a_rounded_price_says_so() -> None:
    video = _priced(FeatureUse("video_render", Decimal("14.5")))
    assert (video.detail, video.used) == ("Video render", "14.5 seconds at 10 credits a second")
    power = _priced(FeatureUse("power", Decimal("1.5")))
    assert (power.detail, power.used) == ("Power", "1.5 kWh at 0.3333 credits a kWh")
    assert power.why == ["0.49995 credits exactly, rounded to the nearest, halves up, to 0.5."]


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (1, "1 credit"),
        (Decimal("1.0"), "1 credit"),
        (-1, "1 credit"),
        (Decimal("1.5"), "1.5 credits"),
        (Decimal("0.5"), "0.5 credits"),
        (0, "0 credits"),
        (1234, "1,234 credits"),
    ],
)
def test_credits_agree_with_their_number(number: Decimal | int, said: str) -> None:
    assert counted(Decimal(number).copy_abs(), "credit") == said


def test_a_moment_is_utc_text_the_browser_may_rewrite() -> None:
    when = datetime(2026, 12, 1, 4, 41, 7, tzinfo=UTC)
    assert str(moment(when)) == (
        '<time datetime="2026-12-01T04:41:07Z" title="1 Dec 2026, 04:41 UTC">'
        "1 Dec 2026, 04:41 UTC</time>"
    )
    assert str(moment(when, date_only=True)) == (
        '<time datetime="2026-12-01T04:41:07Z" title="1 Dec 2026, 04:41 UTC" data-date>'
        "1 Dec 2026</time>"
    )
    assert str(moment(None)) == ""


@pytest.mark.parametrize(("kind", "title"), list(billing.KIND_TITLES.items()))
def test_every_kind_has_a_customer_word(kind: str, title: str) -> None:
    shown = billing.entry(_charge(None, kind=kind), "ada", MONEY, CATALOG)
    assert shown.title == title and not LEDGER_WORDS.search(title.lower())


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"description": "refund", "kind": "clawback"}, "Payment refunded"),
        ({"description": "credit pack purchase", "kind": "purchase"}, "Credit pack"),
        ({"description": "auto top-up", "kind": "purchase"}, "Automatic top-up"),
        ({"description": "balance sync from the gateway", "kind": "sync"}, None),
        ({"description": "cplan_pro allowance", "metadata": {"plan": "cplan_pro"}}, None),
        ({"description": "Sorry about the outage", "kind": "grant"}, "Sorry about the outage"),
        ({"description": None}, None),
    ],
)
def test_creditsd_s_own_descriptions_are_told_in_the_customer_s_words(
    fields: dict[str, Any], detail: str | None
) -> None:
    shown = billing.entry(_charge(None, **fields), "ada", MONEY, CATALOG)
    expected = billing.PLAN_CREDITS if "metadata" in fields else detail
    assert shown.detail == expected


def test_the_credits_a_transfer_spent_or_added_are_told_by_kind() -> None:
    lapses = datetime(2026, 12, 17, tzinfo=UTC)
    spent = [
        LotPart("lot_1", "signup", 412_500, lapses),
        LotPart("lot_2", "promotion", 200_000),
        LotPart("lot_3", "promotion", 837_500),
        LotPart("lot_4", "purchase", 10_000),
    ]
    used = replace(_charge(None, description=None), lots=tuple(spent))
    assert billing.entry(used, "ada", MONEY, CATALOG).why == [
        "Taken from your credits: 41.25 sign-up (expiring 17 Dec 2026), 103.75 promotional, 1 paid."
    ]
    bought = replace(used, kind="purchase", lots=(LotPart("lot_5", "purchase", 10_000),))
    assert billing.entry(bought, REVENUE, MONEY, CATALOG).why == [
        "Paid by card through Stripe.",
        "Added as 1 paid credit.",
    ]


def test_an_item_the_catalog_no_longer_has_reads_by_its_words() -> None:
    gone = {"kind": "feature", "feature": "old_feature", "lines": []}
    assert billing.entry(_charge(gone), "ada", MONEY, CATALOG).detail == "Old feature"
    model = {"kind": "model", "model": "acme/big-1"}
    assert billing.entry(_charge(model), "ada", MONEY, CATALOG).detail == "big-1"


WHOLE = {
    "catalog_version": 3,
    "kind": "meter",
    "meter": "video_render",
    "lines": [
        {
            "item": "video_render",
            "quantity": Decimal("1.5"),
            "unit": "second",
            "unit_price": 10,
            "description": "video_render: 1.5 seconds × 10 credits/second",
        }
    ],
    "exact": Decimal("0.45"),
    "rounding": "up",
    "amount": Decimal("1"),
}

ROUNDED = ["0.45 credits exactly, rounded up to 1."]


@pytest.mark.parametrize(
    ("odd", "used", "why"),
    [
        ({}, "1.5 seconds at 10 credits a second", ROUNDED),
        ({"rounding": None}, "1.5 seconds at 10 credits a second", []),
        ({"rounding": "sideways"}, "1.5 seconds at 10 credits a second", []),
        ({"exact": "0.45"}, "1.5 seconds at 10 credits a second", []),
        ({"amount": [1]}, "1.5 seconds at 10 credits a second", []),
        ({"exact": Decimal("1e-999999")}, "1.5 seconds at 10 credits a second", []),
        ({"exact": Decimal("NaN")}, "1.5 seconds at 10 credits a second", []),
        ({"lines": "1.5 seconds"}, None, ROUNDED),
        ({"lines": [{"quantity": "1.5", "unit": "second", "unit_price": 10}]}, None, ROUNDED),
        ({"lines": [{"quantity": True, "unit": "s", "unit_price": 10}]}, None, ROUNDED),
        ({"lines": [WHOLE["lines"][0]] * 2}, None, ROUNDED),  # type: ignore[index]
        ({"kind": {"meter": True}}, None, ROUNDED),
    ],
)
def test_an_odd_part_of_a_stamp_is_left_out(
    odd: dict[str, Any], used: str | None, why: list[str]
) -> None:
    shown = billing.entry(_charge({**WHOLE, **odd}), "ada", MONEY, CATALOG)
    assert shown.used == used
    assert shown.why == (why or ["Reason given: a chat."])


@pytest.mark.parametrize(
    ("settlement", "why"),
    [
        ("settled", []),
        ({"outcome": "within_hold"}, []),
        ({"estimate": 5, "actual": "3"}, []),
        (
            {"estimate": 1, "actual": 3, "outcome": 1, "released": True},
            ["1 credit was set aside when the work started; it used 3."],
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
    shown = billing.entry(_charge({"settlement": settlement}), "ada", MONEY, CATALOG)
    assert shown.why == (why or ["Reason given: a chat."])


@pytest.mark.parametrize("pricing", [None, [], "stamp", 7, {"model": 7}, {"lines": [None, 7]}])
def test_a_stamp_that_is_no_object_explains_nothing(pricing: Any) -> None:
    shown = billing.entry(_charge(pricing), "ada", MONEY, CATALOG)
    assert (shown.detail, shown.used, shown.parts) == ("a chat", None, [])
    assert shown.why == ["Reason given: a chat."]


def test_a_gateway_s_stamp_is_never_read_as_creditsd_s_price() -> None:
    breakdown = PRICES.price(TokenUse("openai/gpt-4o", input_tokens=1_000), MONEY).breakdown
    stamp = {**breakdown, "cost_usd": Decimal("0.003"), "credits_per_usd": 100}
    shown = billing.entry(_charge(stamp, app="gateway"), "ada", MONEY, CATALOG)
    assert (shown.detail, shown.used, shown.parts) == ("GPT-4o", None, [])
    assert shown.why == ["Priced at 0.003 USD, at 100 credits a dollar."]


def test_the_console_keeps_every_term_of_the_stamp() -> None:
    use = TokenUse("openai/gpt-4o", input_tokens=1_000, output_tokens=1)
    stamp = stamps.Stamp(PRICES.price(use, MONEY).breakdown)
    assert stamps.terms(stamp) == [
        "Catalog version 3",
        "1000 input tokens × 2.50 USD/1M",
        "1 output token × 10.00 USD/1M",
        "US dollars: 0.00251",
        "Credits per US dollar: 100",
        "Markup %: 20",
        "Rate multiplier: 1",
        "Exact credits: 0.3012",
        "Rounded half up to 0.3012",
    ]
    settled = stamps.Stamp({"settlement": {"outcome": "over_hold_capped", "estimate": 5}})
    assert stamps.terms(settled) == ["Hold settled: over hold capped (estimate 5)"]
