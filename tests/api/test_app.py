"""What every endpoint shares: keys and scopes, malformed bodies, health, failures."""

from __future__ import annotations

import gc

import httpx
import pytest

from creditsd.api.app import GC_THRESHOLD, create_app
from creditsd.api.auth import KeyCache
from creditsd.inprocess import Ledger
from creditsd.keys import service as key_service
from tests.conftest import LedgerFactory, body, client_for, create_key


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ('{"account_id": "u", "amount": 1, "surprise": 1}', 422, "validation_error"),
        ('{"account_id": "u"}', 422, "validation_error"),
        ('{"account_id": 7, "amount": 1}', 422, "validation_error"),
        ('{"account_id": "u", "amount": 1, "description": 5}', 422, "validation_error"),
        ('{"account_id": "u", "amount": 1, "metadata": [1]}', 422, "validation_error"),
        ('{"account_id": "u", "amount": 1, "metadata": {"a": {"b": 1}}}', 422, "validation_error"),
        ('{"account_id": "u", "amount": 1, "amount": 2}', 400, "invalid_json"),
        ('{"account_id": "u", "amount": 1', 400, "invalid_json"),
        ("[]", 422, "validation_error"),
        ('{"account_id": "' + "x" * 129 + '", "amount": 1}', 422, "validation_error"),
        ('{"account_id": "a b", "amount": 1}', 422, "validation_error"),
        ('{"account_id": "@revenue", "amount": 1}', 422, "validation_error"),
        (
            '{"account_id": "u", "amount": 1, "idempotency_key": "with space"}',
            422,
            "validation_error",
        ),
        (
            '{"account_id": "u", "amount": 1, "description": "' + "d" * 501 + '"}',
            422,
            "validation_error",
        ),
        ('{"account_id": "u", "amount": NaN}', 422, "invalid_number"),
        ('{"account_id": "u", "amount": -Infinity}', 422, "invalid_number"),
        ('{"account_id": "u", "amount": 1' + "0" * 5000 + "}", 422, "invalid_number"),
        ('{"account_id": "u", "amount": 1e999999999999999999999}', 422, "invalid_number"),
        ('{"account_id": "u", "amount": 1e999999999}', 422, "invalid_amount"),
        ('{"account_id": "u", "amount": 1' + "0" * 4000 + "}", 422, "invalid_amount"),
        (b'{"account_id": "u", "amount": 1, "description": "\xff"}', 400, "invalid_json"),
        ('{"account_id": "u", "amount": 1}'.encode("utf-16"), 400, "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, 400, "invalid_json"),
    ],
)
async def test_malformed_requests_get_a_clear_error(
    api: httpx.AsyncClient, payload: str | bytes, status: int, code: str
) -> None:
    response = await api.post(
        "/v1/charges", content=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = body(response)["error"]
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text and "SELECT" not in response.text


async def test_non_json_bodies_are_refused(api: httpx.AsyncClient) -> None:
    form = await api.post("/v1/charges", data={"account_id": "u", "amount": "1"})
    assert form.status_code == 415
    assert body(form)["error"]["code"] == "unsupported_media_type"
    huge = await api.post(
        "/v1/charges",
        content=b'{"account_id": "u", "amount": 1, "description": "' + b"x" * (1 << 20) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413


async def test_keys_scopes_and_secrets(ledger: Ledger) -> None:
    app = create_app(ledger, sweep=False)
    now = [0.0]
    app.state.key_cache = KeyCache(5, key_service.authenticate, clock=lambda: now[0])
    transport = httpx.ASGITransport(app=app)
    secrets = {
        scope: await create_key(ledger, scope, f"{scope}-app") for scope in ("admin", "app", "read")
    }

    def client(secret: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers)

    charge = {"account_id": "u", "amount": 1}
    for secret in (None, "cdk_wrong", secrets["admin"] + "x", "Basic abc", ""):
        async with client(secret) as anonymous:
            response = await anonymous.post("/v1/charges", json=charge)
            assert response.status_code == 401
            assert body(response)["error"]["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert (await anonymous.get("/v1/accounts/u")).status_code == 401

    async with client(secrets["read"]) as reader:
        assert (await reader.get("/v1/accounts/u")).status_code == 200
        for path, payload in (
            ("/v1/charges", charge),
            ("/v1/grants", charge),
            ("/v1/holds", charge),
        ):
            forbidden = await reader.post(path, json=payload)
            assert forbidden.status_code == 403
            assert body(forbidden)["error"]["code"] == "forbidden"
        assert (await reader.put("/v1/accounts/v")).status_code == 403

    async with client(secrets["app"]) as app_client:
        assert (await app_client.post("/v1/grants", json=charge)).status_code == 403
        assert (await app_client.put("/v1/accounts/v")).status_code == 201
        forbidden = await app_client.put("/v1/accounts/w", json={"initial_grant": 5})
        assert forbidden.status_code == 403
        refused = await app_client.post("/v1/charges", json=charge)
        assert refused.status_code == 402
        assert (await app_client.post("/v1/accounts/u/rebuild")).status_code == 403

    async with client(secrets["admin"]) as admin:
        granted = await admin.post("/v1/grants", json=charge)
        assert body(granted)["app"] == "admin-app"

    from creditsd.keys import service as keys
    from creditsd.kit import db

    stored = await db.run(ledger.engine, keys.list_keys)
    for key in stored:
        assert key.hint.startswith("cdk_…") and len(key.hint) == 9
    async with db.transaction(ledger.engine) as conn:
        from sqlalchemy import text

        hashes = list((await conn.execute(text("SELECT secret_hash FROM api_keys"))).scalars())
    assert not set(hashes) & set(secrets.values())
    revoked = await db.run(
        ledger.engine, lambda conn: keys.revoke_key(conn, stored[0].id, ledger.now(), actor="t")
    )
    assert revoked.revoked_at is not None
    async with client(secrets[stored[0].scope]) as revoked_client:
        now[0] += 5  # [server] key_cache_seconds
        assert (await revoked_client.get("/v1/accounts/u")).status_code == 401


async def test_a_revoked_key_works_for_at_most_the_cache_seconds(ledger: Ledger) -> None:
    from creditsd.keys import service as keys
    from creditsd.kit import db

    app = create_app(ledger, sweep=False)
    now = [0.0]
    app.state.key_cache = KeyCache(5, key_service.authenticate, clock=lambda: now[0])
    secret = await create_key(ledger, "read", "reader")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/accounts/u")).status_code == 200
        (key,) = await db.run(ledger.engine, keys.list_keys)
        await db.run(
            ledger.engine, lambda conn: keys.revoke_key(conn, key.id, ledger.now(), actor="t")
        )
        now[0] = 4.9
        assert (await client.get("/v1/accounts/u")).status_code == 200
        now[0] = 5.0
        assert (await client.get("/v1/accounts/u")).status_code == 401
        now[0] = 100.0
        assert (await client.get("/v1/accounts/u")).status_code == 401

        # A failed lookup is not remembered: a key created after it works at once.
        unknown = await client.get("/v1/accounts/u", headers={"Authorization": "Bearer cdk_x"})
        assert unknown.status_code == 401
        fresh = await create_key(ledger, "read", "later")
        later = await client.get("/v1/accounts/u", headers={"Authorization": f"Bearer {fresh}"})
        assert later.status_code == 200


async def test_key_cache_seconds_zero_checks_every_request(make_ledger: LedgerFactory) -> None:
    from creditsd.keys import service as keys
    from creditsd.kit import db

    ledger = await make_ledger(server={"key_cache_seconds": 0})
    secret = await create_key(ledger, "read", "reader")
    async with client_for(ledger, secret) as client:
        assert (await client.get("/v1/accounts/u")).status_code == 200
        (key,) = await db.run(ledger.engine, keys.list_keys)
        await db.run(
            ledger.engine, lambda conn: keys.revoke_key(conn, key.id, ledger.now(), actor="t")
        )
        assert (await client.get("/v1/accounts/u")).status_code == 401


async def test_health_and_docs(api: httpx.AsyncClient) -> None:
    assert body(await api.get("/healthz")) == {"status": "ok"}
    assert body(await api.get("/readyz")) == {"status": "ready"}
    assert (await api.get("/docs")).status_code == 200
    spec = body(await api.get("/openapi.json"))
    charges = spec["paths"]["/v1/charges"]["post"]
    assert {"201", "401", "402", "403", "409", "422"} <= set(charges["responses"])
    assert spec["components"]["schemas"]["ChargeCreate"]["additionalProperties"] is False


async def test_a_database_that_is_down_answers_503_without_internals(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    from creditsd.kit import db

    down = Ledger(db.create_engine("postgresql://nobody@127.0.0.1:1/none"), ledger.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(down, sweep=False)),
        base_url="http://t",
        headers={"Authorization": "Bearer cdk_whatever"},
    ) as client:
        for response in (
            await client.get("/readyz"),
            await client.post("/v1/charges", json={"account_id": "u", "amount": 1}),
        ):
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            error = body(response)["error"]
            assert error["code"] == "unavailable"
            assert "127.0.0.1" not in response.text and "Errno" not in response.text
        assert (await client.get("/healthz")).status_code == 200
    await down.close()
    # The operator's log says what the driver said (the client's answer does not).
    assert "Connect call failed" in caplog.text


def test_the_app_lets_young_objects_gather_but_never_lowers_a_higher_setting(
    ledger: Ledger,
) -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        create_app(ledger, sweep=False)
        assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)
        gc.set_threshold(50_000, 5, 5)
        create_app(ledger, sweep=False)
        assert gc.get_threshold() == (50_000, 5, 5)
    finally:
        gc.set_threshold(*saved)
