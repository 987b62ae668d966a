"""Grant lots, account status, debt from forced debits, and the new system accounts.

Existing positive balances become one ``adjustment`` lot each, so every credit is in a lot.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW_SYSTEM_ACCOUNTS = ("@expired", "@stripe", "@subscriptions")
LOT_SOURCES = "'purchase', 'subscription', 'signup', 'promotion', 'adjustment'"
ACCOUNT_STATUSES = "'active', 'frozen', 'closed'"
AVAILABLE_OLD = "kind = 'system' OR balance - held + overdraft_limit >= 0"
OLD_AVAILABLE_NAME = "ck_accounts_ck_accounts_available_not_negative"
AVAILABLE_NEW = "kind = 'system' OR balance - held + overdraft_limit + debt >= 0"


def _accounts_as_of_0002() -> sa.Table:
    """The accounts table as 0001 built it, so SQLite's copy-and-rename keeps every rule.

    0001's check constraints went through the naming convention twice, hence their names.
    """
    return sa.Table(
        "accounts",
        sa.MetaData(),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("held", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("overdraft_limit", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.CheckConstraint(
            "kind IN ('customer', 'system')", name=op.f("ck_accounts_ck_accounts_kind")
        ),
        sa.CheckConstraint("held >= 0", name=op.f("ck_accounts_ck_accounts_held_not_negative")),
        sa.CheckConstraint(
            "overdraft_limit >= 0",
            name=op.f("ck_accounts_ck_accounts_overdraft_limit_not_negative"),
        ),
        sa.CheckConstraint(AVAILABLE_OLD, name=op.f(OLD_AVAILABLE_NAME)),
        sa.CheckConstraint(
            "kind = 'customer' OR (balance = 0 AND held = 0)",
            name=op.f("ck_accounts_ck_accounts_system_not_stored"),
        ),
    )


def upgrade() -> None:
    with op.batch_alter_table("accounts", copy_from=_accounts_as_of_0002()) as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="active")
        )
        batch.add_column(sa.Column("debt", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lots_expire_at", Timestamp, nullable=True))
        batch.drop_constraint(op.f(OLD_AVAILABLE_NAME), type_="check")
        batch.create_check_constraint(op.f("ck_accounts_available_not_negative"), AVAILABLE_NEW)
        batch.create_check_constraint(op.f("ck_accounts_status"), f"status IN ({ACCOUNT_STATUSES})")
        batch.create_check_constraint(op.f("ck_accounts_debt_not_negative"), "debt >= 0")
    op.create_table(
        "lots",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("transfer_id", sa.String(32), nullable=True),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_lots_account_id")),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_lots_transfer_id")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_lots_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_lots_remaining")
        ),
        sa.CheckConstraint(f"source IN ({LOT_SOURCES})", name=op.f("ck_lots_source")),
    )
    live = sa.text("remaining > 0")
    op.create_index(
        "ix_lots_spend_order",
        "lots",
        ["account_id", "priority", "expires_at", "id"],
        postgresql_where=live,
        sqlite_where=live,
    )
    op.create_index(
        "ix_lots_expires_at", "lots", ["expires_at"], postgresql_where=live, sqlite_where=live
    )
    op.create_index("ix_lots_reference", "lots", ["reference"])
    op.create_index("ix_lots_transfer_id", "lots", ["transfer_id"])
    op.create_table(
        "lot_spends",
        sa.Column("transfer_id", sa.String(32), nullable=False),
        sa.Column("lot_id", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", "lot_id", name=op.f("pk_lot_spends")),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_lot_spends_transfer_id")
        ),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name=op.f("fk_lot_spends_lot_id")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_lot_spends_amount_positive")),
    )
    op.create_index("ix_lot_spends_lot_id", "lot_spends", ["lot_id"])
    _insert_rows()


def _insert_rows() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    accounts = sa.table(
        "accounts",
        sa.column("id"),
        sa.column("kind"),
        sa.column("balance"),
        sa.column("held"),
        sa.column("overdraft_limit"),
        sa.column("created_at", Timestamp),
        sa.column("updated_at", Timestamp),
    )
    op.bulk_insert(
        accounts,
        [
            {
                "id": name,
                "kind": "system",
                "balance": 0,
                "held": 0,
                "overdraft_limit": 0,
                "created_at": now,
                "updated_at": now,
            }
            for name in NEW_SYSTEM_ACCOUNTS
        ],
    )
    funded = bind.execute(
        sa.select(accounts.c.id, accounts.c.balance).where(
            accounts.c.kind == "customer", accounts.c.balance > 0
        )
    ).all()
    lots = sa.table(
        "lots",
        sa.column("id"),
        sa.column("account_id"),
        sa.column("source"),
        sa.column("amount"),
        sa.column("remaining"),
        sa.column("priority"),
        sa.column("reference"),
        sa.column("created_at", Timestamp),
    )
    if funded:
        op.bulk_insert(
            lots,
            [
                {
                    "id": "lot_" + secrets.token_hex(12),
                    "account_id": account_id,
                    "source": "adjustment",
                    "amount": balance,
                    "remaining": balance,
                    "priority": 40,
                    "reference": "migration:0003",
                    "created_at": now,
                }
                for account_id, balance in funded
            ],
        )


def downgrade() -> None:
    op.drop_table("lot_spends")
    op.drop_table("lots")
    op.execute(
        sa.text("DELETE FROM accounts WHERE id IN ('@expired', '@stripe', '@subscriptions')")
    )
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("ck_accounts_debt_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_accounts_status"), type_="check")
        batch.drop_constraint(op.f("ck_accounts_available_not_negative"), type_="check")
        batch.create_check_constraint(op.f(OLD_AVAILABLE_NAME), AVAILABLE_OLD)
        batch.drop_column("lots_expire_at")
        batch.drop_column("debt")
        batch.drop_column("status")
