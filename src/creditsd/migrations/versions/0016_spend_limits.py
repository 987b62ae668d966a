"""Team wallets and spend limits: members, limits and their windows' spend; the member a
hold or transfer is for; an account's time zone and whether limits apply to it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    op.add_column("accounts", sa.Column("time_zone", sa.String(64), nullable=True))
    op.add_column(
        "accounts",
        sa.Column("spend_controls", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column("holds", sa.Column("member_id", sa.String(128), nullable=True))
    op.add_column("transfers", sa.Column("member_id", sa.String(128), nullable=True))
    op.create_table(
        "members",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("member_id", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "member_id", name="pk_members"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_members_account_id"),
    )
    op.create_table(
        "spend_limits",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("since", Timestamp, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="pk_spend_limits"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_spend_limits_account_id"),
        sa.UniqueConstraint(
            "account_id",
            "scope",
            "subject",
            "period",
            name="uq_spend_limits_account_id_scope_subject_period",
        ),
        sa.CheckConstraint(
            _one_of("scope", ("wallet", "member", "app", "key")), name="ck_spend_limits_scope"
        ),
        sa.CheckConstraint(
            _one_of("period", ("day", "week", "month", "lifetime")),
            name="ck_spend_limits_period",
        ),
        sa.CheckConstraint(_one_of("mode", ("hard", "soft")), name="ck_spend_limits_mode"),
        sa.CheckConstraint("amount >= 0", name="ck_spend_limits_amount_not_negative"),
    )
    op.create_table(
        "limit_windows",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("limit_id", sa.String(32), nullable=False),
        sa.Column("window_start", Timestamp, nullable=False),
        sa.Column("spent", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("warned", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("account_id", "limit_id", "window_start", name="pk_limit_windows"),
        sa.ForeignKeyConstraint(
            ["account_id", "limit_id"],
            ["spend_limits.account_id", "spend_limits.id"],
            name="fk_limit_windows_limit",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("spent >= 0", name="ck_limit_windows_spent_not_negative"),
    )


def downgrade() -> None:
    op.drop_table("limit_windows")
    op.drop_table("spend_limits")
    op.drop_table("members")
    with op.batch_alter_table("transfers") as batch:
        batch.drop_column("member_id")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("member_id")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("spend_controls")
        batch.drop_column("time_zone")
