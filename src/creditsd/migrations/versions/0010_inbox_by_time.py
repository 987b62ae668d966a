"""The webhook inbox read newest first per source (the admin console's inbox pages).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_events_source_received_at", "webhook_events", ["source", "received_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_events_source_received_at", "webhook_events")
