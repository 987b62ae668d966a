"""Proxy keys: per-account keys for /openai/v1, named on the holds and captures they pay.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.kit.db import is_sqlite
from creditsd.tables import Timestamp

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proxy_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("app", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("spend_limit", sa.BigInteger, nullable=True),
        sa.Column("spent", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rate_limit", sa.Integer, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_proxy_keys"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_proxy_keys_account_id"),
        sa.UniqueConstraint("secret_hash", name="uq_proxy_keys_secret_hash"),
        sa.CheckConstraint("spend_limit > 0", name="ck_proxy_keys_spend_limit_positive"),
        sa.CheckConstraint("spent >= 0", name="ck_proxy_keys_spent_not_negative"),
        sa.CheckConstraint("rate_limit > 0", name="ck_proxy_keys_rate_limit_positive"),
    )
    op.create_index("ix_proxy_keys_account_id_id", "proxy_keys", ["account_id", "id"])
    for table in ("holds", "transfers"):
        _add_key_column(table)
    op.create_index("ix_holds_proxy_key_id_status", "holds", ["proxy_key_id", "status"])


def _add_key_column(table: str) -> None:
    name = f"fk_{table}_proxy_key_id"
    if is_sqlite(op.get_context().dialect):
        # SQLite adds a nullable column with its reference in place; a batch (all Alembic
        # offers for a constraint there) would copy the whole table.
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN proxy_key_id VARCHAR(32) "
            f"CONSTRAINT {name} REFERENCES proxy_keys (id)"
        )
        return
    op.add_column(table, sa.Column("proxy_key_id", sa.String(32), nullable=True))
    op.create_foreign_key(name, table, "proxy_keys", ["proxy_key_id"], ["id"])


def downgrade() -> None:
    op.drop_index("ix_holds_proxy_key_id_status", "holds")
    for table in ("transfers", "holds"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("proxy_key_id")  # its reference goes with it
    op.drop_table("proxy_keys")
