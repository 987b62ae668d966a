"""Proxy keys minted for a wallet's member: every call through one is that member's.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("proxy_keys", sa.Column("member_id", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proxy_keys") as batch:
        batch.drop_column("member_id")
