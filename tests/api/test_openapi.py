"""The OpenAPI document says what the server enforces: a body its schema allows is not
refused as invalid, and a body the server refuses as invalid its schema does not allow."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from jsonschema_rs import Draft202012Validator

from tests.conftest import body

USAGE = {"model": "openai/gpt-4o-mini", "input_tokens": 10}
CHAT = {"prompt_tokens": 10, "completion_tokens": 2, "later_field": {"x": 1}}
PROVIDED = {"model": "openai/gpt-4o-mini", "openai_chat": CHAT}
# What a priced write may carry: exactly one of amount, feature (with quantity) or usage.
PRICED: list[tuple[dict[str, Any], bool]] = [
    ({"amount": 1}, True),
    ({"amount": "1.5", "feature": None, "usage": None, "quantity": None}, True),
    ({"feature": "chat_message"}, True),
    ({"feature": "chat_message", "quantity": 2, "amount": None}, True),
    ({"usage": USAGE}, True),
    ({"usage": USAGE, "amount": None, "feature": None}, True),
    ({"usage": PROVIDED}, True),
    ({"usage": {**PROVIDED, "anthropic": None}}, True),
    ({"usage": {**USAGE, "gemini": None}}, True),
    ({"usage": {**USAGE, "cache_write_tokens_by_ttl": {"1h": 5, "90m": 1}}}, False),
    ({"usage": {**USAGE, "cache_write_tokens_by_ttl": {"1h": 5, "12h": 1}}}, True),
    ({"usage": {**PROVIDED, "input_tokens": 0}}, False),
    ({"usage": {**PROVIDED, "gemini": {"promptTokenCount": 1}}}, False),
    ({"usage": {**PROVIDED, "openai_chat": {"prompt_tokens": 10}}}, False),
    ({}, False),
    ({"amount": None}, False),
    ({"amount": 1, "feature": "chat_message"}, False),
    ({"amount": 1, "usage": USAGE}, False),
    ({"feature": "chat_message", "usage": USAGE}, False),
    ({"amount": 1, "quantity": 2}, False),
    ({"usage": USAGE, "quantity": 2}, False),
    ({"quantity": 2}, False),
]


async def validator(api: httpx.AsyncClient, schema: str) -> Draft202012Validator:
    """A validator of one component schema of the server's own /openapi.json."""
    spec = body(await api.get("/openapi.json"))
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    )


def refused_as_invalid(response: httpx.Response) -> bool:
    return response.status_code == 422 and body(response)["error"]["code"] == "validation_error"


@pytest.mark.parametrize(("fields", "valid"), PRICED)
async def test_a_priced_body_is_valid_by_the_schema_exactly_when_the_server_takes_it(
    api: httpx.AsyncClient, fields: dict[str, Any], valid: bool
) -> None:
    await api.post("/v1/grants", json={"account_id": "u", "amount": 1000})
    hold = body(await api.post("/v1/holds", json={"account_id": "u", "amount": 100}))
    writes = [
        ("ChargeCreate", "/v1/charges", {"account_id": "u", **fields}),
        ("HoldCreate", "/v1/holds", {"account_id": "u", **fields}),
        ("HoldCapture", f"/v1/holds/{hold['id']}/capture", fields),
    ]
    for schema, path, sent in writes:
        assert (await validator(api, schema)).is_valid(sent) is valid, (schema, sent)
        response = await api.post(path, json=sent)
        assert refused_as_invalid(response) is not valid, (path, sent, response.text)


@pytest.mark.parametrize(
    ("fields", "valid"), [(f, v) for f, v in PRICED if "amount" not in f or f["amount"] is None]
)
async def test_a_quote_body_is_valid_by_the_schema_exactly_when_the_server_takes_it(
    api: httpx.AsyncClient, fields: dict[str, Any], valid: bool
) -> None:
    fields = {name: value for name, value in fields.items() if name != "amount"}
    assert (await validator(api, "QuoteCreate")).is_valid(fields) is valid, fields
    response = await api.post("/v1/quotes", json=fields)
    assert refused_as_invalid(response) is not valid, (fields, response.text)


@pytest.mark.parametrize(("written", "taken"), [("60.0", True), ("6E+1", True), ("60.5", False)])
async def test_an_integer_field_takes_what_json_schema_counts_as_an_integer(
    api: httpx.AsyncClient, written: str, taken: bool
) -> None:
    # JSON Schema's "integer" is any number without a fraction: 60.0 is one, 60.5 is not.
    await api.post("/v1/grants", json={"account_id": "u", "amount": 1000})
    sends = [
        ("/v1/holds", f'{{"account_id": "u", "amount": 1, "expires_in": {written}}}'),
        ("/v1/grants", f'{{"account_id": "u", "amount": 1, "priority": {written}}}'),
        ("/v1/quotes", f'{{"usage": {{"model": "openai/gpt-4o", "input_tokens": {written}}}}}'),
    ]
    for path, sent in sends:
        response = await api.post(path, content=sent, headers={"Content-Type": "application/json"})
        assert refused_as_invalid(response) is not taken, (path, response.text)


async def test_the_bounds_of_integer_fields_are_in_the_schema(api: httpx.AsyncClient) -> None:
    hold, grant = await validator(api, "HoldCreate"), await validator(api, "GrantCreate")
    usage = await validator(api, "UsageIn")
    assert hold.is_valid({"account_id": "u", "amount": 1, "expires_in": 60.0})
    assert not hold.is_valid({"account_id": "u", "amount": 1, "expires_in": 0})
    assert not grant.is_valid({"account_id": "u", "amount": 1, "priority": 1001})
    assert not usage.is_valid({"model": "openai/gpt-4o", "input_tokens": -1})


@pytest.mark.parametrize("amount", [0, -1, "0", "0.0", "-1.5", "00.5"])
async def test_an_amount_the_server_refuses_as_not_positive_the_schema_refuses_too(
    api: httpx.AsyncClient, amount: object
) -> None:
    sent = {"account_id": "u", "amount": amount}
    assert not (await validator(api, "ChargeCreate")).is_valid(sent)
    assert not (await validator(api, "GrantCreate")).is_valid(sent)
    for path in ("/v1/charges", "/v1/grants"):
        assert (await api.post(path, json=sent)).status_code == 422


async def test_a_zero_setting_is_valid_by_the_schema_and_taken(api: httpx.AsyncClient) -> None:
    sent = {"initial_grant": 0, "overdraft_limit": "0", "low_balance_threshold": 0}
    assert (await validator(api, "AccountPut")).is_valid(sent)
    assert (await api.put("/v1/accounts/zero", json=sent)).status_code == 201
    refused = {"overdraft_limit": -1}
    assert not (await validator(api, "AccountPut")).is_valid(refused)
    assert (await api.put("/v1/accounts/zero", json=refused)).status_code == 422


async def test_metadata_numbers_with_fractions_are_answered_as_the_schema_says(
    api: httpx.AsyncClient,
) -> None:
    sent = {"metadata": {"ratio": 0.25, "tiny": -2.225073858507e-311, "seats": 3}}
    assert (await validator(api, "AccountPut")).is_valid(sent)
    answer = await api.put("/v1/accounts/fractions", json=sent)
    assert answer.status_code == 201
    shown = body(answer)
    assert (await validator(api, "AccountOut")).is_valid(shown)
    exact = {"ratio": Decimal("0.25"), "tiny": Decimal("-2.225073858507e-311"), "seats": 3}
    assert shown["metadata"] == exact
