"""Priced charges, quotes and the catalog over HTTP, as the seed apps use them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from creditsd.api.app import create_app
from creditsd.cli import app as cli
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, body, create_key


@asynccontextmanager
async def client(ledger: Ledger, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ledger, sweep=False)),
        base_url="http://creditsd.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as http:
        yield http


async def test_two_apps_share_one_balance_priced_by_the_catalog(
    make_ledger: LedgerFactory,
) -> None:
    ledger = await make_ledger(accounts={"signup_grant": 100})
    chat_key, canvas_key = (
        await create_key(ledger, "app", "chat"),
        await create_key(ledger, "app", "canvas"),
    )
    async with client(ledger, chat_key) as chat, client(ledger, canvas_key) as canvas:
        assert body(await chat.get("/v1/accounts/user_2abc"))["available"] == 100
        sent = await chat.post(
            "/v1/charges",
            json={"account_id": "user_2abc", "feature": "chat_message"},
            headers={"Idempotency-Key": "msg-1"},
        )
        assert sent.status_code == 201, sent.text
        assert (body(sent)["amount"], body(sent)["balance"]) == (10, 90)
        drawn = await canvas.post(
            "/v1/charges",
            json={"account_id": "user_2abc", "feature": "canvas_generation_simple"},
            headers={"Idempotency-Key": "msg-1"},  # another app's key space: no clash
        )
        assert drawn.status_code == 201, drawn.text
        assert body(drawn)["balance"] == 40
        seen = [body(await http.get("/v1/accounts/user_2abc")) for http in (chat, canvas)]
        assert seen[0] == seen[1]
        assert seen[0]["balance"] == seen[0]["available"] == 40
        history = body(await canvas.get("/v1/accounts/user_2abc/transactions"))["data"]
        assert [(t["app"], t["change"]) for t in history] == [
            ("canvas", -50),
            ("chat", -10),
            ("creditsd", 100),
        ]


async def test_a_transfer_explains_its_price(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 1000})
    video = body(
        await api.post(
            "/v1/charges", json={"account_id": "u", "feature": "video_generation", "quantity": 30}
        )
    )
    assert video["amount"] == 300
    why = body(await api.get(f"/v1/transactions/{video['id']}"))["pricing"]
    assert why["catalog_version"] == 1
    assert why["kind"] == "meter"
    assert why["lines"] == [
        {
            "item": "video_generation",
            "description": "video_generation: 30 seconds × 10 credits/second",
            "quantity": 30,
            "unit": "second",
            "unit_price": 10,
            "credits": 300,
        }
    ]
    assert why["summary"] == (
        "video_generation: 30 seconds × 10 credits/second = 300 credits,"
        " rounded half up to 300 (catalog v1)"
    )


async def test_an_llm_call_costs_what_a_hand_computes(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 1000})
    usage = {"model": "openai/gpt-4o", "input_tokens": 1800, "output_tokens": 523}
    quote = body(await api.post("/v1/quotes", json={"usage": usage}))
    # (1800 × 2.50 + 523 × 10.00) / 10^6 USD × 100 credits/USD = 0.973 credits
    assert quote["amount"] == Decimal("0.973")
    assert quote["catalog_version"] == 1
    assert body(await api.get("/v1/accounts/u"))["balance"] == 1000  # a quote charges nothing
    charged = body(await api.post("/v1/charges", json={"account_id": "u", "usage": usage}))
    assert charged["amount"] == Decimal("0.973")
    assert charged["balance"] == Decimal("999.027")
    assert charged["pricing"]["usd"] == Decimal("0.00973")
    assert charged["pricing"] == quote["breakdown"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"feature": "teleport"}, "unknown_feature"),
        ({"usage": {"model": "acme/nothing", "input_tokens": 1}}, "unknown_model"),
        ({"feature": "chat_message", "quantity": "1.5"}, "invalid_quantity"),
        ({"feature": "video_generation", "quantity": "NaN"}, "validation_error"),
        ({"feature": "video_generation", "quantity": True}, "validation_error"),
        ({"feature": "video_generation", "quantity": -3}, "invalid_quantity"),
        ({"usage": {"model": "openai/gpt-4o"}}, "zero_price"),
        ({"usage": {"model": "openai/gpt-4o", "input_tokens": -1}}, "validation_error"),
        ({"usage": {"model": "openai/gpt-4o", "input_tokens": "5"}}, "validation_error"),
        ({"usage": {"model": "openai/gpt-4o", "input_tokens": 1.5}}, "validation_error"),
        ({"usage": {"model": "openai/gpt-4o", "input_tokens": 10**13}}, "validation_error"),
        ({"usage": {"model": "openai/gpt-4o", "input_tokens": 1, "x": 1}}, "validation_error"),
        ({"feature": "chat_message", "amount": 10}, "validation_error"),
        ({"quantity": 2, "amount": 10}, "validation_error"),
        ({}, "validation_error"),
    ],
)
async def test_priced_inputs_that_are_refused(
    api: httpx.AsyncClient, payload: dict[str, object], code: str
) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    refused = await api.post("/v1/charges", json={"account_id": "u", **payload})
    assert refused.status_code == 422, refused.text
    assert body(refused)["error"]["code"] == code
    if code == "unknown_feature":
        assert "chat_message" in body(refused)["error"]["known"]
    history = body(await api.get("/v1/accounts/u/transactions"))["data"]
    assert [t["kind"] for t in history] == ["grant"]


async def test_a_new_catalog_version_leaves_old_transfers_and_replays_alone(
    ledger: Ledger, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 1000})
    ask = {"account_id": "u", "feature": "chat_message"}
    first = body(await api.post("/v1/charges", json=ask, headers={"Idempotency-Key": "c1"}))
    file = tmp_path / "creditsd.toml"
    file.write_text("[pricing.features.chat_message]\nprice = 12\n")
    catalog, created = await ledger.publish_pricing(load_settings(file, environ={}).pricing)
    assert (catalog.version, created) == (2, True)
    assert (await ledger.publish_pricing(catalog.settings))[1] is False  # same content
    assert body(await api.get("/v1/pricing"))["version"] == 2
    replay = await api.post("/v1/charges", json=ask, headers={"Idempotency-Key": "c1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert body(replay)["id"] == first["id"]
    assert body(replay)["amount"] == 10  # what it cost then
    second = body(await api.post("/v1/charges", json=ask, headers={"Idempotency-Key": "c2"}))
    assert (second["amount"], second["pricing"]["catalog_version"]) == (12, 2)
    old = body(await api.get(f"/v1/transactions/{first['id']}"))
    assert (old["amount"], old["pricing"]["catalog_version"]) == (10, 1)


async def test_the_catalog_names_each_entry_for_customers(
    make_ledger: LedgerFactory, tmp_path: Path
) -> None:
    ledger = await make_ledger()
    file = tmp_path / "creditsd.toml"
    file.write_text(
        "[pricing.features.chat_message]\nprice = 10\n"
        '[pricing.meters.render]\nprice = 2.5\nunit = "frame"\ndisplay_name = "Video render"\n'
        '[pricing.models."acme/m-1"]\ninput = 1\noutput = 2\nmarkup_percent = 20\n'
    )
    await ledger.publish_pricing(load_settings(file, environ={}).pricing)
    async with client(ledger, await create_key(ledger, "read")) as api:
        shown = body(await api.get("/v1/pricing"))
    assert shown["features"] == {
        "chat_message": {
            "display_name": "Chat message",
            "price": 10,
            "max_quantity": None,
            "description": None,
        }
    }
    assert shown["meters"]["render"] == {
        "display_name": "Video render",
        "price": Decimal("2.5"),
        "unit": "frame",
        "unit_plural": "frames",
        "max_quantity": None,
        "description": None,
    }
    model = shown["models"]["acme/m-1"]
    assert (model["display_name"], model["input"], model["markup_percent"]) == ("m-1", 1, 20)
    assert model["rate_multiplier"] is None  # the catalog's


def test_creditsd_pricing_reload_publishes_and_a_bad_file_keeps_the_old_version(
    database_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "creditsd.toml"
    env = {"CREDITSD_DATABASE_URL": database_url, "CREDITSD_CONFIG": str(file)}
    runner = CliRunner()
    file.write_text("[pricing.features.chat_message]\nprice = 10\n")
    done = runner.invoke(cli, ["pricing", "reload"], env=env)
    assert (done.exit_code, done.stdout.strip()) == (0, "catalog v1 published")
    file.write_text("[pricing.features.chat_message]\nprice = 11\n")
    assert runner.invoke(cli, ["pricing", "reload"], env=env).stdout.strip() == (
        "catalog v2 published"
    )
    same = runner.invoke(cli, ["pricing", "reload"], env=env)
    assert "v2 unchanged" in same.stdout
    file.write_text("[pricing.features.chat_message]\nprice = -1\n")
    refused = runner.invoke(cli, ["pricing", "reload"], env=env)
    assert refused.exit_code == 2
    assert "pricing.features.chat_message.price (line 2)" in refused.stderr
    # Any process (here one without the file) prices with the newest published version.
    shown = runner.invoke(cli, ["pricing", "show"], env={**env, "CREDITSD_CONFIG": os.devnull})
    assert '"version":2' in shown.stdout
    assert '"chat_message":{"price":11}' in shown.stdout


async def test_in_process_a_charge_takes_an_amount_or_a_use_never_both(ledger: Ledger) -> None:
    from creditsd.kit.errors import InvalidRequest
    from creditsd.pricing.catalog import FeatureUse

    await ledger.grant("u", 100 * ledger.money.unit)
    with pytest.raises(InvalidRequest):
        await ledger.charge("u", 10, use=FeatureUse("chat_message"))
    with pytest.raises(InvalidRequest):
        await ledger.charge("u")
    charged = await ledger.charge("u", use=FeatureUse("chat_message"))
    assert charged.amount == 10 * ledger.money.unit
    assert (await ledger.quote(FeatureUse("ai_image_generation", Decimal(2)))).amount == (
        10 * ledger.money.unit
    )
