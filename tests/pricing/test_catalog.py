"""The catalog's arithmetic, exact to the last minor unit, and the files it refuses."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from creditsd.config import ConfigError, load_settings
from creditsd.kit.money import Money
from creditsd.price_settings import PricingSettings, plural, readable
from creditsd.pricing.catalog import (
    Catalog,
    FeatureUse,
    InvalidQuantity,
    TokenUse,
    UnknownFeature,
    UnknownModel,
    ZeroPrice,
)

MONEY = Money(4)


def catalog(**pricing: object) -> Catalog:
    return Catalog(7, PricingSettings.model_validate(pricing))


def test_the_seeds_defaults() -> None:
    prices = catalog()
    expected = {
        "chat_message": 10,
        "canvas_generation_simple": 50,
        "canvas_generation_complex": 75,
        "ai_text_chat": 1,
        "ai_image_generation": 5,
    }
    for feature, credits in expected.items():
        assert prices.price(FeatureUse(feature), MONEY).amount == credits * MONEY.unit
    assert prices.price(FeatureUse("ai_image_generation", Decimal(3)), MONEY).amount == 150_000
    video = prices.price(FeatureUse("video_generation", Decimal(30)), MONEY)
    assert video.amount == 300 * MONEY.unit
    assert video.breakdown["lines"][0]["unit"] == "second"
    training = prices.price(FeatureUse("training_job", Decimal("1.5")), MONEY)
    assert training.amount == 300 * MONEY.unit


def test_names_customers_read_come_from_the_catalog_else_from_the_id() -> None:
    settings = PricingSettings.model_validate(
        {
            "features": {
                "chat_message": {"price": 1},
                "ai_chat": {"price": 1, "display_name": "AI"},
            },
            "meters": {
                "video_generation": {"price": 1, "unit": "second"},
                "power": {"price": 1, "unit": "kWh", "unit_plural": "kWh"},
            },
            "models": {"acme/big-1:beta": {"input": 1, "output": 1}},
        }
    )
    named = settings.display_name
    assert (named("chat_message"), named("ai_chat")) == ("Chat message", "AI")
    assert (named("video_generation"), named("acme/big-1:beta")) == (
        "Video generation",
        "big-1:beta",
    )
    assert named("retired_feature") == "Retired feature"  # a stamp from an older version
    assert (settings.units("video_generation", "second"), settings.units("power", "kWh")) == (
        "seconds",
        "kWh",
    )
    assert settings.units("power", "Wh") == "Whs"  # priced in a unit the meter no longer has
    defaults = PricingSettings()
    assert defaults.display_name("openai/gpt-4o-mini") == "GPT-4o mini"
    assert defaults.units("training_job", "GPU hour") == "GPU hours"


@pytest.mark.parametrize(
    ("unit", "units"),
    [
        ("second", "seconds"),
        ("GPU hour", "GPU hours"),
        ("page", "pages"),
        ("box", "boxes"),
        ("pass", "passes"),
        ("batch", "batches"),
        ("query", "queries"),
        ("day", "days"),
    ],
)
def test_a_unit_s_plural_follows_the_common_rule(unit: str, units: str) -> None:
    assert plural(unit) == units


@pytest.mark.parametrize(
    ("item", "name"),
    [
        ("chat_message", "Chat message"),
        ("video-render_hd", "Video-render hd"),
        ("x", "X"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("anthropic/claude-sonnet-4", "claude-sonnet-4"),
    ],
)
def test_an_id_reads_as_words(item: str, name: str) -> None:
    assert readable(item) == name


def test_an_llm_call_is_priced_by_hand_to_the_last_minor_unit() -> None:
    prices = catalog(
        credits_per_usd=100,
        models={
            "acme/model-1": {
                "input": "3.00",
                "output": "15.00",
                "cache_read": "0.30",
                "cache_write": "3.75",
                "reasoning": "20",
                "markup_percent": "12.5",
                "rate_multiplier": "1.1",
            }
        },
    )
    use = TokenUse(
        "acme/model-1",
        input_tokens=1800,
        output_tokens=733,
        cache_read_tokens=12_000,
        cache_write_tokens=999,
        reasoning_tokens=41,
    )
    # USD: 1800×3 + 733×15 + 12000×0.30 + 999×3.75 + 41×20, per million
    usd = Decimal("5400") + Decimal("10995") + Decimal("3600") + Decimal("3746.25") + 820
    usd /= 1_000_000  # 0.02456125
    credits = usd * 100 * Decimal("1.125") * Decimal("1.1")  # 3.0394546875
    price = prices.price(use, MONEY)
    assert price.breakdown["exact"] == credits
    assert price.amount == 30395  # 3.0395: half up at 4 places
    assert price.breakdown["amount"] == Decimal("3.0395")
    assert price.breakdown["catalog_version"] == 7
    assert [line["item"] for line in price.breakdown["lines"]] == [
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ]
    assert "acme/model-1: 1800 input tokens × 3.00 USD/1M" in price.breakdown["summary"]


def test_unpriced_token_kinds_fall_back_and_the_catalog_markup_applies() -> None:
    prices = catalog(
        markup_percent=50,
        models={"acme/m": {"input": 2, "output": 8}},
    )
    price = prices.price(
        TokenUse("acme/m", cache_read_tokens=500_000, reasoning_tokens=250_000), MONEY
    )
    # cache reads at the input price (1 USD), reasoning at the output price (2 USD): 3 USD,
    # × 100 credits/USD × 1.5 markup
    assert price.amount == 450 * MONEY.unit
    assert price.breakdown["markup_percent"] == 50


def test_cache_writes_kept_longer_cost_their_own_price_or_the_standard_write_price() -> None:
    prices = catalog(
        models={
            "acme/two": {
                "input": 2,
                "output": 8,
                "cache_write": 3,
                "cache_write_by_ttl": {"1h": 5},
            },
            "acme/one": {"input": 2, "output": 8, "cache_write": 3},
            "acme/none": {"input": 2, "output": 8},
        }
    )

    def writes(model: str) -> TokenUse:
        return TokenUse(
            model, cache_write_tokens=1_000_000, cache_write_tokens_by_ttl=(("1h", 1_000_000),)
        )

    # 1M standard writes + 1M one-hour writes: 3 + 5 USD; 3 + 3 USD; 2 + 2 USD (input's price)
    for model, usd in [("acme/two", 8), ("acme/one", 6), ("acme/none", 4)]:
        assert prices.price(writes(model), MONEY).amount == usd * 100 * MONEY.unit, model
    lines = prices.price(writes("acme/two"), MONEY).breakdown["lines"]
    assert [line["description"] for line in lines] == [
        "1000000 cache write tokens × 3 USD/1M",
        "1000000 cache write (1h) tokens × 5 USD/1M",
    ]


@pytest.mark.parametrize(
    ("rounding", "one_and_a_half", "two_and_a_half"),
    [("half_up", 2, 3), ("half_even", 2, 2), ("up", 2, 3), ("down", 1, 2)],
)
def test_rounding_rules(rounding: str, one_and_a_half: int, two_and_a_half: int) -> None:
    # One token at p USD/M is p × 10^-4 credits at 100 credits/USD: at scale 6, p × 100 units.
    for per_million, expected in (("0.015", one_and_a_half), ("0.025", two_and_a_half)):
        prices = catalog(rounding=rounding, models={"acme/m": {"input": per_million, "output": 0}})
        assert prices.price(TokenUse("acme/m", input_tokens=1), Money(6)).amount == expected


def test_uses_the_catalog_cannot_price() -> None:
    prices = catalog()
    with pytest.raises(UnknownFeature) as unknown:
        prices.price(FeatureUse("teleport"), MONEY)
    assert "chat_message" in unknown.value.details["known"]
    assert "video_generation" in unknown.value.details["known"]
    with pytest.raises(UnknownModel) as model:
        prices.price(TokenUse("acme/nothing", input_tokens=1), MONEY)
    assert "openai/gpt-4o-mini" in model.value.details["known"]
    with pytest.raises(InvalidQuantity, match="whole number"):
        prices.price(FeatureUse("chat_message", Decimal("1.5")), MONEY)
    with pytest.raises(InvalidQuantity, match="greater than zero"):
        prices.price(FeatureUse("video_generation", Decimal(0)), MONEY)
    with pytest.raises(InvalidQuantity, match="decimal places"):
        prices.price(FeatureUse("video_generation", Decimal("0.0000001")), MONEY)
    with pytest.raises(ZeroPrice):
        prices.price(TokenUse("openai/gpt-4o-mini"), MONEY)
    with pytest.raises(InvalidQuantity, match="range"):
        prices.price(FeatureUse("training_job", Decimal(10) ** 20), MONEY)
    capped = catalog(features={"image": {"price": 5, "max_quantity": 4}})
    with pytest.raises(InvalidQuantity, match="at most 4"):
        capped.price(FeatureUse("image", Decimal(5)), MONEY)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[pricing.features.chat]\nprice = -10\n", "pricing.features.chat.price (line 2)"),
        ("[pricing.features.chat]\nprice = 0\n", "pricing.features.chat.price (line 2)"),
        ("[pricing.features.chat]\nprice = nan\n", "pricing.features.chat.price (line 2)"),
        (
            "[pricing.features.chat]\nprice = 1\ncolour = 2\n",
            "pricing.features.chat.colour (line 3)",
        ),
        ('[pricing.models."a/b"]\n', "pricing.models.a/b.input (line 1)"),
        ('[pricing.models."a/b"]\ninput = 1\noutput = -2\n', "pricing.models.a/b.output (line 3)"),
        ('[pricing.models."no-vendor"]\ninput = 1\noutput = 2\n', "pricing.models.no-vendor"),
        (
            '[pricing.models."a/b"]\ninput = 1\noutput = 2\ncache_write_by_ttl = { "60m" = 3 }\n',
            "pricing.models.a/b.cache_write_by_ttl.60m.[key] (line 4)",
        ),
        ("[pricing]\ncredits_per_usd = 0\n", "pricing.credits_per_usd (line 2)"),
        ('[pricing]\nrounding = "nearest"\n', "pricing.rounding (line 2)"),
        ("[pricing.meters.video]\nprice = 1\n", "pricing.meters.video.unit (line 1)"),
        (
            '[pricing.features.chat]\nprice = 1\ndisplay_name = "  "\n',
            "pricing.features.chat.display_name (line 3)",
        ),
        (
            f'[pricing.models."a/b"]\ninput = 1\noutput = 2\ndisplay_name = "{"x" * 81}"\n',
            "pricing.models.a/b.display_name (line 4)",
        ),
        (
            '[pricing.meters.video]\nprice = 1\nunit = "s"\nunit_plural = ""\n',
            "pricing.meters.video.unit_plural (line 4)",
        ),
        (
            '[pricing.features.x]\nprice = 1\n[pricing.meters.x]\nprice = 1\nunit = "s"\n',
            "named both a feature and a meter",
        ),
    ],
)
def test_a_bad_catalog_file_names_the_key_and_its_line(
    tmp_path: Path, toml: str, named: str
) -> None:
    file = tmp_path / "creditsd.toml"
    file.write_text("# prices\n" + toml)
    with pytest.raises(ConfigError) as refused:
        load_settings(file, environ={})
    # The leading comment moves every line down by one.
    expected = named
    if "(line " in named:
        number = int(named.rsplit("(line ", 1)[1].rstrip(")")) + 1
        expected = f"{named.rsplit(' (line ', 1)[0]} (line {number})"
    assert expected in str(refused.value)


def test_a_version_remembers_its_prices_and_a_new_version_starts_afresh() -> None:
    old = catalog(features={"chat_message": {"price": 10}})
    first = old.price(FeatureUse("chat_message"), MONEY)
    assert old.price(FeatureUse("chat_message"), MONEY) is first
    new = Catalog(8, PricingSettings.model_validate({"features": {"chat_message": {"price": 12}}}))
    again = new.price(FeatureUse("chat_message"), MONEY)
    assert (again.amount, again.breakdown["catalog_version"]) == (12 * MONEY.unit, 8)
    assert old.price(FeatureUse("chat_message"), MONEY) is first
    # Equal quantities written differently are priced (and refused) on their own.
    assert old.price(FeatureUse("training_job", Decimal(1)), MONEY).amount == 200 * MONEY.unit
    with pytest.raises(InvalidQuantity):
        old.price(FeatureUse("training_job", Decimal("1.0000000")), MONEY)
    # Each scale is its own price.
    assert old.price(FeatureUse("chat_message"), Money(2)).amount == 10 * 100
