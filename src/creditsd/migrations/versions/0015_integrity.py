"""Scheduled reconciliation: drifts found, the checkpoint chain, and its job's lease.

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0015"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integrity_drifts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("invariant", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("detected_at", Timestamp, nullable=False),
        sa.Column("resolved_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_integrity_drifts"),
    )
    op.create_index(
        "ix_integrity_drifts_open",
        "integrity_drifts",
        ["invariant", "subject"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
        sqlite_where=sa.text("resolved_at IS NULL"),
    )
    op.create_table(
        "integrity_checkpoints",
        sa.Column("number", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("until", Timestamp, nullable=False),
        sa.Column("transfers", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.CheckConstraint("number >= 1", name="ck_integrity_checkpoints_number_positive"),
        sa.PrimaryKeyConstraint("number", name="pk_integrity_checkpoints"),
        sa.UniqueConstraint("until", name="uq_integrity_checkpoints_until"),
    )
    op.create_table(
        "transfer_digests",
        sa.Column("transfer_id", sa.String(32), nullable=False),
        sa.Column("checkpoint", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name="pk_transfer_digests"),
    )
    op.create_index("ix_transfer_digests_checkpoint", "transfer_digests", ["checkpoint"])
    jobs = op.create_table(
        "scheduled_jobs",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_until", Timestamp, nullable=True),
        sa.Column("last_success_at", Timestamp, nullable=True),
        sa.Column("last_duration_ms", sa.BigInteger, nullable=True),
        sa.Column("last_full_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_scheduled_jobs"),
    )
    op.bulk_insert(jobs, [{"name": "reconcile"}])


def downgrade() -> None:
    op.drop_table("scheduled_jobs")
    op.drop_index("ix_transfer_digests_checkpoint", "transfer_digests")
    op.drop_table("transfer_digests")
    op.drop_table("integrity_checkpoints")
    op.drop_index("ix_integrity_drifts_open", "integrity_drifts")
    op.drop_table("integrity_drifts")
