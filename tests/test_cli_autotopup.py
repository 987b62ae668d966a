"""``creditsd auto-topup`` as an operator types it: a rule set in credits, shown with the
customer's card and the last attempt, turned off at once, mistakes named."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from creditsd.autotopup import service
from creditsd.autotopup.models import Card
from creditsd.inprocess import Ledger
from tests.conftest import make_settings
from tests.test_cli import audit_actions, run

CREDIT = 10_000
PACKS = '[packs.1k]\ncredits = 1000\nprice_id = "price_1k"\n'


def cell(table: str, label: str) -> str:
    """The value beside ``label`` in a two-column table as printed, its wrapped lines
    joined (the width the console took is the terminal's, or 80)."""
    value: list[str] = []
    for line in table.splitlines():
        cells = [part.strip() for part in line.split("│")[1:-1]]
        if len(cells) == 2 and (cells[0] == label or (value and not cells[0])):
            value.append(cells[1])
        elif value:
            break
    return " ".join(value)


def on_ledger(database_url: str, work: Callable[[Ledger], Awaitable[Any]]) -> None:
    """Do something to the ledger as the app and Stripe would, between commands."""

    async def main() -> None:
        ledger = await Ledger.connect(make_settings(database_url))
        try:
            await work(ledger)
        finally:
            await ledger.close()

    asyncio.run(main())


async def save_card_and_spend(ledger: Ledger) -> None:
    """The customer saves a card (the consent Stripe's webhook records), then spends below
    the threshold: an attempt is queued."""
    card = Card(
        customer_id="cus_ada",
        payment_method_id="pm_ada",
        fingerprint="fp_ada",
        last4="4242",
        brand="visa",
    )
    await ledger.database.write(
        lambda conn, now: service.record_consent(
            conn, "ada", card, "web (checkout cs_1)", ledger.policy, now
        )
    )
    await ledger.grant("ada", 150 * CREDIT)
    await ledger.charge("ada", 100 * CREDIT)


@pytest.fixture
def config(tmp_path: Path) -> str:
    """A configuration selling one pack."""
    path = tmp_path / "creditsd.toml"
    path.write_text(PACKS)
    return str(path)


def test_set_show_and_turn_off(database_url: str, config: str) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        return run(database_url, *args, CREDITSD_CONFIG=config, COLUMNS="120")

    code, _, err = cli("auto-topup", "show", "ada")
    assert code == 1 and "account_not_found" in err
    assert cli("grant", "ada", "1", "--reason", "hello")[0] == 0
    code, _, err = cli("auto-topup", "show", "ada")
    assert code == 1 and "auto_topup_not_found: account 'ada' has no auto top-up" in err
    code, out, _ = cli("accounts", "show", "ada")
    assert code == 0 and "never set up" in out

    set_rule = ("auto-topup", "set", "ada", "--threshold", "100", "--monthly-cap", "5000")
    code, out, _ = cli(*set_rule, "--target", "500.5")
    assert code == 0, out
    assert "awaiting card" in out
    assert "below 100, up to 500.5, at most 5000 a month" in out
    assert "none saved yet" in out

    on_ledger(database_url, save_card_and_spend)
    code, out, _ = cli("auto-topup", "show", "ada")
    assert code == 0
    assert "active" in out and "visa ····4242" in out
    assert "web (checkout cs_1)" in out
    assert "queued, 449.5 credits" in out  # 51 available: 449.5 to reach 500.5
    assert "449.5 bought or being bought" in out
    code, out, _ = cli("accounts", "show", "ada")
    assert cell(out, "auto top-up") == (
        "active: below 100, up to 500.5, at most 5000 a month; 449.5 bought this month;"
        " visa ····4242"
    )
    shown = json.loads(cli("auto-topup", "show", "ada", "--json")[1])
    assert (shown["state"], shown["card"]["last4"], shown["month_total"]) == (
        "active",
        "4242",
        449.5,
    )

    code, out, _ = cli(*set_rule, "--pack", "1k")
    assert code == 0 and "below 100, one pack 1k, at most 5000 a month" in out
    code, out, _ = cli("auto-topup", "off", "ada")
    assert code == 0 and "auto top-up of ada turned off" in out
    code, out, _ = cli("auto-topup", "off", "ada")
    assert code == 0 and "was already off" in out
    code, out, _ = cli("auto-topup", "show", "ada")
    assert "off" in out and "visa ····4242" in out  # the card stays for turning it on again
    updated = [a for a in audit_actions(database_url, "ada") if a == "auto_topup.updated"]
    assert len(updated) == 3  # set, set, off: a second off changes nothing


@pytest.mark.parametrize(
    ("options", "exit_code", "says"),
    [
        ([], 2, "give --target or --pack"),
        (["--target", "500", "--pack", "1k"], 2, "give --target or --pack"),
        (["--target", "500", "--threshold", "1.00001"], 2, "invalid --threshold"),
        (["--target", "ten"], 2, "invalid --target"),
        (["--target", "100"], 1, "invalid_auto_topup: target_balance must be above threshold"),
        (["--pack", "nope"], 1, "unknown_pack"),
        (["--target", "500", "--monthly-cap", "0"], 2, "invalid --monthly-cap"),
    ],
)
def test_a_bad_rule_is_named(
    database_url: str, config: str, options: list[str], exit_code: int, says: str
) -> None:
    base = {"--threshold": "100", "--monthly-cap": "5000"}
    given = dict(zip(options[::2], options[1::2], strict=True))
    args = [arg for pair in {**base, **given}.items() for arg in pair]
    code, _, err = run(
        database_url, "auto-topup", "set", "ada", *args, CREDITSD_CONFIG=config, COLUMNS="120"
    )
    assert code == exit_code, err
    assert says in err
