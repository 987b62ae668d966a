"""The system account the gateway's balance syncs move credits against.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = datetime.now(UTC)
    accounts = sa.table(
        "accounts",
        sa.column("id"),
        sa.column("kind"),
        sa.column("created_at", Timestamp),
        sa.column("updated_at", Timestamp),
    )
    op.bulk_insert(
        accounts, [{"id": "@gateway", "kind": "system", "created_at": now, "updated_at": now}]
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM accounts WHERE id = '@gateway'"))
