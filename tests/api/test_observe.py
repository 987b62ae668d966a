"""What operators watch: request ids, the JSON access log, and ``GET /metrics``."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from creditsd.api.app import create_app
from creditsd.inprocess import Ledger
from creditsd.kit import db
from tests.conftest import Clock, LedgerFactory, client_for, create_key

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def access_log() -> io.StringIO:
    """Where the app under test writes its access log."""
    return io.StringIO()


@pytest.fixture(params=[True, False], ids=["fast-lane", "fastapi"])
async def app_client(
    ledger: Ledger, access_log: io.StringIO, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no key, of the app with its fast lane and without it."""
    app = create_app(ledger, sweep=False, fast_lane=request.param, access_log=access_log)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://creditsd.test"
    ) as client:
        yield client


def access_lines(access_log: io.StringIO) -> list[dict[str, object]]:
    """The access log's lines, each parsed (each must be one JSON object)."""
    return [json.loads(line) for line in access_log.getvalue().splitlines()]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


async def test_every_response_echoes_a_valid_request_id_or_gets_one(
    ledger: Ledger, app_client: httpx.AsyncClient
) -> None:
    secret = await create_key(ledger, "app", "web")
    auth = {"Authorization": f"Bearer {secret}"}
    poor = {"account_id": "poor", "amount": 5}
    answers = [
        await app_client.get("/healthz", headers={"X-Request-Id": "req-1.A_b:c/d"}),
        await app_client.get("/nowhere", headers={"X-Request-Id": "req-1.A_b:c/d"}),
        await app_client.get("/v1/accounts/u", headers={"X-Request-Id": "req-1.A_b:c/d"}),
        await app_client.post(
            "/v1/charges", json=poor, headers={**auth, "X-Request-Id": "req-1.A_b:c/d"}
        ),
        await app_client.post(
            "/v1/charges", content=b"{", headers={**auth, "X-Request-Id": "req-1.A_b:c/d"}
        ),
    ]
    assert [answer.status_code for answer in answers] == [200, 404, 401, 402, 400]
    assert {answer.headers["X-Request-Id"] for answer in answers} == {"req-1.A_b:c/d"}

    refused = [b"x" * 129, b"has space", b"caf\xc3\xa9", b"tab\there", b""]
    for value in [*refused, None]:
        headers = {} if value is None else {b"x-request-id": value}
        bearer = {b"authorization": f"Bearer {secret}".encode()}
        for response in (
            await app_client.get("/healthz", headers=headers),
            await app_client.post("/v1/charges", json=poor, headers={**bearer, **headers}),
        ):
            assert GENERATED_ID.fullmatch(response.headers["X-Request-Id"]), value
    first = await app_client.get("/healthz")
    second = await app_client.get("/healthz")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    longest = await app_client.get("/healthz", headers={"X-Request-Id": "x" * 128})
    assert longest.headers["X-Request-Id"] == "x" * 128


async def test_one_json_access_line_per_request_without_secrets(
    ledger: Ledger, app_client: httpx.AsyncClient, access_log: io.StringIO
) -> None:
    secret = await create_key(ledger, "admin", "ops")
    auth = {"Authorization": f"Bearer {secret}"}
    await app_client.post("/v1/grants", json={"account_id": "u1", "amount": 10}, headers=auth)
    access_log.seek(0)
    access_log.truncate()  # the grant's line

    charged = await app_client.post(
        "/v1/charges",
        json={"account_id": "u1", "amount": 1},
        headers={**auth, "X-Request-Id": "charge-1"},
    )
    await app_client.get("/v1/accounts/u1/transactions?limit=5", headers=auth)
    await app_client.get("/v1/accounts/u1", headers={"Authorization": "Bearer cdk_wrong"})
    await app_client.get("/no/such/path")

    assert charged.status_code == 201
    lines = access_lines(access_log)
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/v1/charges", 201),
        ("GET", "/v1/accounts/{account_id}/transactions", 200),
        ("GET", "/v1/accounts/{account_id}", 401),
        ("GET", None, 404),
    ]
    charge, history, unknown, nowhere = lines
    assert charge["request_id"] == "charge-1"
    assert charge["path"] == "/v1/charges"
    assert history["path"] == "/v1/accounts/u1/transactions"  # the query string stays out
    assert GENERATED_ID.fullmatch(str(history["request_id"]))
    for line in (charge, history):
        assert line["key_name"] == "ops"
        assert str(line["key_id"]).startswith("key_")
        assert isinstance(line["duration_ms"], float)
        assert line["duration_ms"] > 0
    assert (unknown["key_id"], unknown["key_name"]) == (None, None)
    assert (nowhere["key_id"], nowhere["key_name"]) == (None, None)
    logged = access_log.getvalue()
    assert secret not in logged
    assert "cdk_wrong" not in logged
    assert "authorization" not in logged.lower()


async def test_metrics_count_requests_charges_refusals_and_batches(
    ledger: Ledger, clock: Clock
) -> None:
    async with client_for(ledger, await create_key(ledger, "admin", "ops")) as api:
        await api.post("/v1/grants", json={"account_id": "m1", "amount": 10})
        await api.post(
            "/v1/webhook-endpoints",
            json={
                "url": "http://127.0.0.1:9/hooks",
                "events": ["charge.succeeded"],
            },
        )
        before = (await api.get("/metrics")).text

        assert (
            await api.post("/v1/charges", json={"account_id": "m1", "amount": 3})
        ).status_code == 201
        assert (
            await api.post("/v1/charges", json={"account_id": "m1", "amount": 99})
        ).status_code == 402
        usage = await api.post(
            "/v1/usage",
            json={
                "events": [
                    {"id": "e1", "account_id": "m1", "feature": "ai_text_chat"},
                    {"id": "e2", "account_id": "m1", "feature": "canvas_generation_simple"},
                ]
            },
        )
        assert [r["status"] for r in usage.json()["results"]] == ["charged", "insufficient_credits"]
        clock.advance(30)
        scraped = await api.get("/metrics")

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    after = scraped.text

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    latency = "creditsd_http_request_duration_seconds_count"
    assert grew(latency, method="POST", route="/v1/charges", status="201") == 1
    assert grew(latency, method="POST", route="/v1/charges", status="402") == 1
    assert grew(latency, method="GET", route="/metrics", status="200") == 1
    assert grew("creditsd_charges_total", operation="charge") == 1
    assert grew("creditsd_charges_total", operation="usage") == 1
    assert grew("creditsd_insufficient_credits_total", operation="charge") == 1
    assert grew("creditsd_insufficient_credits_total", operation="usage") == 1
    assert grew("creditsd_group_commit_batch_size_count") == 2
    assert grew("creditsd_group_commit_batch_size_sum") == 2
    # Both charges told the endpoint; nothing delivers here (no worker).
    assert sample(after, "creditsd_outbox_messages", status="pending") == 2
    assert sample(after, "creditsd_outbox_messages", status="dead") == 0
    assert sample(after, "creditsd_outbox_oldest_pending_age_seconds") >= 30
    assert sample(after, "creditsd_db_pool_size") == ledger.settings.database.pool_size


async def test_metrics_show_connections_in_use_and_an_empty_outbox(
    ledger: Ledger, api: httpx.AsyncClient
) -> None:
    idle = (await api.get("/metrics")).text
    assert sample(idle, "creditsd_db_pool_connections_in_use") == 0
    assert sample(idle, "creditsd_outbox_messages", status="pending") == 0
    assert sample(idle, "creditsd_outbox_oldest_pending_age_seconds") == 0
    async with ledger.engine.connect():
        busy = (await api.get("/metrics")).text
    assert sample(busy, "creditsd_db_pool_connections_in_use") == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_who_may_read_metrics(make_ledger: LedgerFactory) -> None:
    open_ledger = await make_ledger()
    transport = httpx.ASGITransport(app=create_app(open_ledger, sweep=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anyone:
        assert (await anyone.get("/metrics")).status_code == 200

    keyed = await make_ledger(server={"metrics": "key"})
    read_key = await create_key(keyed, "read", "prometheus")
    transport = httpx.ASGITransport(app=create_app(keyed, sweep=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anyone:
        refused = await anyone.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        allowed = await anyone.get("/metrics", headers={"Authorization": f"Bearer {read_key}"})
        assert allowed.status_code == 200
        assert "creditsd_http_request_duration_seconds" in allowed.text

    hidden = await make_ledger(server={"metrics": "off"})
    async with client_for(hidden, await create_key(hidden, "admin", "ops")) as admin:
        assert (await admin.get("/metrics")).status_code == 404
        assert "/metrics" not in (await admin.get("/openapi.json")).json()["paths"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_metrics_leave_the_outbox_out_while_the_database_is_down(ledger: Ledger) -> None:
    down = Ledger(db.create_engine("postgresql://nobody@127.0.0.1:1/none"), ledger.settings)
    transport = httpx.ASGITransport(app=create_app(down, sweep=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as anyone:
        scraped = await anyone.get("/metrics")
    await down.close()
    assert scraped.status_code == 200
    assert "creditsd_http_request_duration_seconds" in scraped.text
    assert sample(scraped.text, "creditsd_db_pool_size") == ledger.settings.database.pool_size
    assert "creditsd_outbox" not in scraped.text
