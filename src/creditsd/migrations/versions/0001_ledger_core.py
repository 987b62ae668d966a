"""The ledger core: accounts, names, holds, transfers, API keys, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SYSTEM_ACCOUNTS = ("@revenue", "@grants", "@signup", "@adjustments")
TRANSFER_KINDS = (
    "'purchase', 'grant', 'charge', 'capture', 'refund', 'clawback', 'adjustment', 'expiry', "
    "'sync', 'reversal'"
)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "ledger_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_ledger_meta"),
    )
    accounts = op.create_table(
        "accounts",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("held", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("overdraft_limit", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.CheckConstraint("kind IN ('customer', 'system')", name="ck_accounts_kind"),
        sa.CheckConstraint("held >= 0", name="ck_accounts_held_not_negative"),
        sa.CheckConstraint("overdraft_limit >= 0", name="ck_accounts_overdraft_limit_not_negative"),
        sa.CheckConstraint(
            "kind = 'system' OR balance - held + overdraft_limit >= 0",
            name="ck_accounts_available_not_negative",
        ),
        sa.CheckConstraint(
            "kind = 'customer' OR (balance = 0 AND held = 0)", name="ck_accounts_system_not_stored"
        ),
    )
    op.create_table(
        "account_names",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_account_names"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_account_names_account_id"
        ),
    )
    op.create_index("ix_account_names_account_id", "account_names", ["account_id"])
    op.create_table(
        "holds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("captured", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_holds_account_id"),
        sa.CheckConstraint("amount > 0", name="ck_holds_amount_positive"),
        sa.CheckConstraint("captured >= 0", name="ck_holds_captured_not_negative"),
        sa.CheckConstraint(
            "status <> 'open' OR captured <= amount", name="ck_holds_open_within_amount"
        ),
        sa.CheckConstraint(
            "status IN ('open', 'captured', 'released', 'expired')", name="ck_holds_status"
        ),
        sa.UniqueConstraint("app", "idempotency_key", name="uq_holds_app_idempotency_key"),
    )
    op.create_index("ix_holds_account_id_status", "holds", ["account_id", "status"])
    op.create_index("ix_holds_status_expires_at", "holds", ["status", "expires_at"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit_account_id", sa.String(128), nullable=False),
        sa.Column("credit_account_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("hold_id", sa.String(32), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("metadata", _json(), nullable=True),
        sa.Column("debit_balance_after", sa.BigInteger, nullable=True),
        sa.Column("debit_available_after", sa.BigInteger, nullable=True),
        sa.Column("credit_balance_after", sa.BigInteger, nullable=True),
        sa.Column("credit_available_after", sa.BigInteger, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_transfers"),
        sa.ForeignKeyConstraint(
            ["debit_account_id"], ["accounts.id"], name="fk_transfers_debit_account_id"
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"], ["accounts.id"], name="fk_transfers_credit_account_id"
        ),
        sa.ForeignKeyConstraint(["hold_id"], ["holds.id"], name="fk_transfers_hold_id"),
        sa.CheckConstraint("amount > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_transfers_two_accounts"
        ),
        sa.CheckConstraint(f"kind IN ({TRANSFER_KINDS})", name="ck_transfers_kind"),
        sa.UniqueConstraint("app", "idempotency_key", name="uq_transfers_app_idempotency_key"),
    )
    op.create_index("ix_transfers_debit_account_id_id", "transfers", ["debit_account_id", "id"])
    op.create_index("ix_transfers_credit_account_id_id", "transfers", ["credit_account_id", "id"])
    op.create_index("ix_transfers_created_at", "transfers", ["created_at"])
    op.create_index("ix_transfers_hold_id", "transfers", ["hold_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
        sa.CheckConstraint("scope IN ('admin', 'app', 'read')", name="ck_api_keys_scope"),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("before", _json(), nullable=True),
        sa.Column("after", _json(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_target_id", "audit_log", ["target", "id"])
    now = datetime.now(UTC)
    op.bulk_insert(
        accounts,
        [
            {
                "id": name,
                "kind": "system",
                "balance": 0,
                "held": 0,
                "overdraft_limit": 0,
                "metadata": None,
                "created_at": now,
                "updated_at": now,
            }
            for name in SYSTEM_ACCOUNTS
        ],
    )


def downgrade() -> None:
    for table in (
        "audit_log",
        "api_keys",
        "transfers",
        "holds",
        "account_names",
        "accounts",
        "ledger_meta",
    ):
        op.drop_table(table)
