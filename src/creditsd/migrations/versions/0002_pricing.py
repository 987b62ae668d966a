"""Pricing: published catalog versions, and the price stamp on transfers and holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "price_catalogs",
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("catalog", _json(), nullable=False),
        sa.Column("published_by", sa.String(128), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_price_catalogs"),
        sa.CheckConstraint("version >= 1", name="ck_price_catalogs_version_positive"),
    )
    op.add_column("transfers", sa.Column("pricing", _json(), nullable=True))
    op.add_column("holds", sa.Column("pricing", _json(), nullable=True))


def downgrade() -> None:
    op.drop_column("holds", "pricing")
    op.drop_column("transfers", "pricing")
    op.drop_table("price_catalogs")
