"""Who holds each account frozen (the accounts frozen until now: an operator); refunds and
disputes that came before their payment's purchase.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_freezes",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "holder", name="pk_account_freezes"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_account_freezes_account_id"
        ),
    )
    # Who froze them was not recorded: an operator's freeze, which only an operator lifts,
    # keeps them frozen whatever happens to their disputes.
    op.execute(
        "INSERT INTO account_freezes (account_id, holder, reason, created_at) "
        "SELECT id, 'operator', 'frozen before freezes named their holder', updated_at "
        "FROM accounts WHERE status = 'frozen'"
    )
    op.create_table(
        "stripe_early_events",
        sa.Column("payment_id", sa.String(255), nullable=False),
        sa.Column("event_ids", sa.JSON(none_as_null=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name="pk_stripe_early_events"),
    )


def downgrade() -> None:
    op.drop_table("stripe_early_events")
    op.drop_table("account_freezes")
