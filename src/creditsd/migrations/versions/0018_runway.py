"""Runway warnings: each account's burn per day, as the worker last worked it out, and the
lowest runway level a ``balance.runway_low`` told of.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("runway_burn", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("runway_warned", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("runway_warned")
        batch.drop_column("runway_burn")
