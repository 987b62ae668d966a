"""The migrations: they build exactly the schema the code describes, and carry data over."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert

from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db
from creditsd.migrations import upgrade
from creditsd.tables import account_names, accounts, api_keys, metadata
from tests.conftest import Databases, make_settings

CREDIT = 10_000


async def test_the_migrations_build_what_tables_py_describes(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            drift = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert drift == []


async def test_balances_from_before_lots_become_a_lot_each(
    databases: Databases, backend: str
) -> None:
    url = await databases.fresh(backend, migrated=False)
    engine = db.create_engine(url)
    try:
        await upgrade(engine, "0002")
        now = datetime.now(UTC)
        async with db.transaction(engine) as conn:
            await conn.execute(
                insert(accounts).values(
                    id="early",
                    kind="customer",
                    balance=75 * CREDIT,
                    held=0,
                    overdraft_limit=0,
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(insert(account_names).values(name="early", account_id="early"))
        await upgrade(engine)
    finally:
        await engine.dispose()

    ledger = await Ledger.connect(make_settings(url))
    try:
        account = await ledger.get_account("early")
        assert (account.status, account.by_source) == ("active", {"adjustment": 75 * CREDIT})
        charge = await ledger.charge("early", 25 * CREDIT)
        assert [(part.source, part.amount) for part in charge.lots] == [("adjustment", 25 * CREDIT)]
    finally:
        await ledger.close()


async def test_keys_from_before_expiry_never_expire(databases: Databases, backend: str) -> None:
    url = await databases.fresh(backend, migrated=False)
    engine = db.create_engine(url)
    secret = "cdk_made-before-keys-could-expire"
    try:
        await upgrade(engine, "0006")
        async with db.transaction(engine) as conn:
            await conn.execute(
                insert(api_keys).values(
                    id="key_early",
                    name="early",
                    scope="read",
                    secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                    hint="cdk_…pire",
                    created_at=datetime.now(UTC),
                )
            )
        await upgrade(engine)
        async with db.transaction(engine) as conn:
            found = await keys.authenticate(conn, secret, datetime.now(UTC) + timedelta(days=9999))
    finally:
        await engine.dispose()
    assert found is not None
    assert (found.id, found.expires_at) == ("key_early", None)


async def test_accounts_frozen_before_freezes_had_holders_stay_frozen_by_an_operator(
    databases: Databases, backend: str
) -> None:
    url = await databases.fresh(backend, migrated=False)
    engine = db.create_engine(url)
    try:
        await upgrade(engine, "0011")
        now = datetime.now(UTC)
        async with db.transaction(engine) as conn:
            for account_id, status in (("cold", "frozen"), ("warm", "active")):
                await conn.execute(
                    insert(accounts).values(
                        id=account_id,
                        kind="customer",
                        created_at=now,
                        updated_at=now,
                        status=status,
                    )
                )
                await conn.execute(
                    insert(account_names).values(name=account_id, account_id=account_id)
                )
        await upgrade(engine)
    finally:
        await engine.dispose()

    ledger = await Ledger.connect(make_settings(url))
    try:
        cold, warm = [await ledger.get_account(name) for name in ("cold", "warm")]
        assert (cold.status, cold.frozen_by) == ("frozen", ("operator",))
        assert (warm.status, warm.frozen_by) == ("active", ())
        assert await ledger.set_status("cold", "active") is True
        assert (await ledger.get_account("cold")).status == "active"
    finally:
        await ledger.close()
