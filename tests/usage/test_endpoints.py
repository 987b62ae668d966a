"""``POST /v1/usage``: a batch of events, each charged once, one answer per event in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from tests.conftest import body


def events(count: int) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    for n in range(count):
        if n % 2:
            batch.append({"id": f"e{n}", "account_id": f"u{n % 7}", "feature": "ai_text_chat"})
        else:
            batch.append(
                {
                    "id": f"e{n}",
                    "account_id": f"u{n % 7}",
                    "usage": {"model": "openai/gpt-4o-mini", "input_tokens": 1000 + n},
                    "timestamp": "2026-11-22T10:00:00Z",
                    "metadata": {"request": n},
                }
            )
    return batch


async def spent_by_all(api: httpx.AsyncClient) -> Any:
    balances = [body(await api.get(f"/v1/accounts/u{n}"))["balance"] for n in range(7)]
    return sum(10_000 - balance for balance in balances)


async def test_a_thousand_events_with_duplicates_and_invalid_ones(
    api: httpx.AsyncClient,
) -> None:
    for n in range(7):
        await api.post("/v1/grants", json={"account_id": f"u{n}", "amount": 10_000})
    batch = events(987)
    batch += [dict(batch[n]) for n in range(0, 100, 10)]  # 10 duplicates
    batch += [
        {"id": "bad-1", "account_id": "u1", "feature": "teleport"},
        {"id": "bad-2", "account_id": "u1", "feature": "chat_message", "quantity": "NaN"},
        {"account_id": "u1", "feature": "chat_message"},
    ]
    assert len(batch) == 1000
    answered = await api.post("/v1/usage", json={"events": batch})
    assert answered.status_code == 200, answered.text
    results = body(answered)["results"]
    assert [result["id"] for result in results[:997]] == [event["id"] for event in batch[:997]]
    statuses = [result["status"] for result in results]
    assert statuses[:987] == ["charged"] * 987
    assert statuses[987:997] == ["duplicate"] * 10
    for n, duplicate in zip(range(0, 100, 10), results[987:997], strict=True):
        assert duplicate["transfer_id"] == results[n]["transfer_id"]
    assert statuses[997:] == ["invalid"] * 3
    assert results[997]["error"]["code"] == "unknown_feature"
    assert results[998]["error"]["code"] == "validation_error"
    assert results[999]["id"] is None
    spent = await spent_by_all(api)
    assert spent > 0
    again = body(await api.post("/v1/usage", json={"events": batch}))["results"]
    assert [result["status"] for result in again] == ["duplicate"] * 997 + ["invalid"] * 3
    assert await spent_by_all(api) == spent
    one = body(await api.get(f"/v1/transactions/{results[0]['transfer_id']}"))
    assert one["pricing"]["event_id"] == "e0"
    assert one["pricing"]["occurred_at"] == "2026-11-22T10:00:00.000000Z"
    assert one["metadata"] == {"request": 0}
    for n in range(7):
        assert body(await api.get(f"/v1/accounts/u{n}/verify"))["valid"] is True


async def test_an_event_the_account_cannot_afford_fails_alone(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "poor", "amount": 15})
    batch = [
        {"id": "a", "account_id": "poor", "feature": "chat_message"},
        {"id": "b", "account_id": "poor", "feature": "chat_message"},
        {"id": "c", "account_id": "poor", "feature": "ai_image_generation"},
    ]
    results = body(await api.post("/v1/usage", json={"events": batch}))["results"]
    assert [r["status"] for r in results] == ["charged", "insufficient_credits", "charged"]
    assert results[1]["error"]["required"] == 10
    assert results[1]["error"]["available"] == 5
    assert body(await api.get("/v1/accounts/poor"))["balance"] == 0


async def test_a_reused_event_id_with_other_content_is_invalid(api: httpx.AsyncClient) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    first = {"id": "x", "account_id": "u", "feature": "chat_message"}
    await api.post("/v1/usage", json={"events": [first]})
    changed = {**first, "feature": "ai_text_chat"}
    results = body(await api.post("/v1/usage", json={"events": [changed]}))["results"]
    assert (results[0]["status"], results[0]["error"]["code"]) == (
        "invalid",
        "idempotency_conflict",
    )


async def test_batches_that_are_refused_whole(api: httpx.AsyncClient) -> None:
    too_many = [{"id": f"e{n}", "account_id": "u", "feature": "chat_message"} for n in range(1001)]
    payloads: list[dict[str, Any]] = [
        {"events": too_many},
        {"events": []},
        {"events": "x"},
        {"evts": []},
    ]
    for payload in payloads:
        refused = await api.post("/v1/usage", json=payload)
        assert refused.status_code == 422
        assert body(refused)["error"]["code"] == "validation_error"


async def test_events_after_a_new_catalog_version_are_priced_by_it(
    ledger: Ledger, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 100})
    chat = {"account_id": "u", "feature": "chat_message"}
    before = body(await api.post("/v1/usage", json={"events": [{"id": "a", **chat}]}))
    file = tmp_path / "creditsd.toml"
    file.write_text("[pricing.features.chat_message]\nprice = 12\n")
    await ledger.publish_pricing(load_settings(file, environ={}).pricing)
    after = body(await api.post("/v1/usage", json={"events": [{"id": "b", **chat}]}))
    charged = [
        body(await api.get(f"/v1/transactions/{answer['results'][0]['transfer_id']}"))
        for answer in (before, after)
    ]
    assert [(t["amount"], t["pricing"]["catalog_version"]) for t in charged] == [(10, 1), (12, 2)]
    assert body(await api.get("/v1/accounts/u"))["balance"] == 78
