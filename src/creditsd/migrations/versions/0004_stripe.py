"""Webhook inbox, Stripe customers and payments.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("handled_at", Timestamp, nullable=True),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("detail", _json(), nullable=True),
        sa.PrimaryKeyConstraint("source", "event_id", name=op.f("pk_webhook_events")),
    )
    op.create_index("ix_webhook_events_type_received_at", "webhook_events", ["type", "received_at"])
    op.create_table(
        "stripe_customers",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(255), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_stripe_customers")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stripe_customers_account_id")
        ),
        sa.UniqueConstraint("customer_id", name=op.f("uq_stripe_customers_customer_id")),
    )
    op.create_table(
        "stripe_payments",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=True),
        sa.Column("invoice_id", sa.String(255), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("items", _json(), nullable=False),
        sa.Column("transfer_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("refunded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("clawed_back", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("confirmed_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_payments")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stripe_payments_account_id")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_stripe_payments_transfer_id")
        ),
        sa.CheckConstraint("credits > 0", name=op.f("ck_stripe_payments_credits_positive")),
        sa.CheckConstraint(
            "clawed_back >= 0 AND clawed_back <= credits",
            name=op.f("ck_stripe_payments_clawed_back"),
        ),
    )
    op.create_index("ix_stripe_payments_account_id", "stripe_payments", ["account_id"])


def downgrade() -> None:
    op.drop_table("stripe_payments")
    op.drop_table("stripe_customers")
    op.drop_table("webhook_events")
