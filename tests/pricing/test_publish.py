"""Publishing a catalog is explicit and visible (issue 10; each failed on main)."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

from creditsd.cli import app as cli
from creditsd.inprocess import Ledger
from creditsd.kit.db import RetryTransaction
from creditsd.pricing.catalog import FeatureUse
from tests.conftest import LedgerFactory, body, client_for, create_key, make_settings

CUSTOM = {"features": {"chat_message": {"price": "12"}}}


async def test_a_process_without_a_pricing_file_never_replaces_the_published_catalog(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="creditsd")
    configured = await Ledger.connect(
        make_settings(database_url, pricing=CUSTOM), publish_pricing=True
    )
    published = await configured.catalog()
    await configured.close()
    assert f"published catalog version {published.version}" in caplog.text

    bare = await Ledger.connect(make_settings(database_url), publish_pricing=True)
    try:
        serving = await bare.catalog()
        assert serving.version == published.version
        price = serving.price(FeatureUse("chat_message", Decimal(1)), bare.money)
        assert price.amount == 12 * bare.money.unit
    finally:
        await bare.close()


async def test_a_publish_logs_what_changed(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="creditsd")
    ledger = await Ledger.connect(make_settings(database_url), publish_pricing=True)
    try:
        before, _ = await ledger.publish_pricing(ledger.settings.pricing)
        settings = make_settings(database_url, pricing=CUSTOM).pricing
        after, created = await ledger.publish_pricing(settings, actor="ops")
        assert created and after.version == before.version + 1
        line = next(
            r.getMessage() for r in caplog.records if f"version {after.version}" in r.getMessage()
        )
        assert "ops" in line and "features.chat_message" in line
    finally:
        await ledger.close()


def test_pricing_reload_without_a_pricing_section_publishes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "creditsd.toml"
    file.write_text("[server]\nport = 8001\n")
    env = {"CREDITSD_DATABASE_URL": database_url, "CREDITSD_CONFIG": str(file)}
    done = CliRunner().invoke(cli, ["pricing", "reload"], env=env)
    assert done.exit_code == 1
    assert "no [pricing]" in done.stderr


def test_pricing_diff_names_each_setting_the_file_would_change(
    database_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "creditsd.toml"
    env = {"CREDITSD_DATABASE_URL": database_url, "CREDITSD_CONFIG": str(file)}
    runner = CliRunner()
    file.write_text("[pricing.features.chat_message]\nprice = 10\n")
    assert runner.invoke(cli, ["pricing", "reload"], env=env).exit_code == 0
    same = runner.invoke(cli, ["pricing", "diff"], env=env)
    assert same.exit_code == 0 and "is the live one (v1)" in same.stdout
    file.write_text("[pricing.features.chat_message]\nprice = 12\n")
    changed = runner.invoke(cli, ["pricing", "diff"], env=env)
    assert changed.exit_code == 1
    assert changed.stdout.splitlines() == ["features.chat_message.price: 10 → 12"]


async def test_reading_prices_before_any_publish_writes_nothing(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger()
    async with client_for(ledger, await create_key(ledger, "read")) as reader:
        shown = await reader.get("/v1/pricing")
        quoted = await reader.post("/v1/quotes", json={"feature": "chat_message"})
    assert shown.status_code == 200 and quoted.status_code == 200, (shown.text, quoted.text)
    assert (await ledger.catalog()).version == body(shown)["version"] == 1
    assert await _published(ledger) == 0

    # The first priced write publishes exactly what the reads showed.
    await ledger.grant("ada", 100 * ledger.money.unit)
    charged = await ledger.charge("ada", use=FeatureUse("chat_message"))
    assert await _published(ledger) == 1
    assert charged.pricing is not None and charged.pricing["catalog_version"] == 1
    assert ledger.money.to_decimal(charged.amount) == Decimal(body(quoted)["amount"])


async def _published(ledger: Ledger) -> int:
    async with ledger.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM price_catalogs"))).scalar_one())


async def test_a_catalog_published_in_a_transaction_that_reran_is_published_again(
    make_ledger: LedgerFactory,
) -> None:
    # The first priced write publishes the catalog in its own transaction; when that
    # transaction is rolled back and run again (a serialization failure), the rerun must
    # publish it again, not price with a version the database never kept.
    ledger = await make_ledger()
    attempts = 0

    async def price(conn: AsyncConnection, now: datetime) -> int:
        nonlocal attempts
        attempts += 1
        catalog = await ledger.prices.current(conn, now)
        if attempts == 1:
            raise RetryTransaction
        return catalog.version

    assert await ledger.database.write(price) == 1
    assert attempts == 2
    assert await _published(ledger) == 1
