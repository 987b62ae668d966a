"""Admin console sessions and opened portal links, kept by the hash of their token.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.CheckConstraint(
            "kind IN ('admin_session', 'portal_link')", name="ck_web_tokens_kind_known"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_web_tokens"),
    )
    op.create_index("ix_web_tokens_expires_at", "web_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_web_tokens_expires_at", "web_tokens")
    op.drop_table("web_tokens")
