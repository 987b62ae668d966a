"""Auto top-up: each account's rule, consent (a saved card) and state, and its attempts,
at most one in flight per account.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from creditsd.tables import Timestamp

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _rules() -> None:
    op.create_table(
        "auto_topups",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("threshold", sa.BigInteger, nullable=False),
        sa.Column("target_balance", sa.BigInteger, nullable=True),
        sa.Column("pack", sa.String(64), nullable=True),
        sa.Column("monthly_cap", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.String(255), nullable=True),
        sa.Column("consecutive_declines", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", Timestamp, nullable=True),
        sa.Column("cap_reached_in", sa.String(7), nullable=True),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("payment_method_id", sa.String(255), nullable=True),
        sa.Column("card_fingerprint", sa.String(255), nullable=True),
        sa.Column("card_last4", sa.String(4), nullable=True),
        sa.Column("card_brand", sa.String(32), nullable=True),
        sa.Column("consented_by", sa.String(255), nullable=True),
        sa.Column("consented_at", Timestamp, nullable=True),
        sa.Column("consented_rule", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_auto_topups"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_auto_topups_account_id"),
        sa.CheckConstraint(
            _one_of("state", ("active", "paused", "needs_action")), name="ck_auto_topups_state"
        ),
        sa.CheckConstraint("threshold >= 0", name="ck_auto_topups_threshold_not_negative"),
        sa.CheckConstraint("monthly_cap > 0", name="ck_auto_topups_monthly_cap_positive"),
        sa.CheckConstraint(
            "(target_balance IS NULL) <> (pack IS NULL)",
            name="ck_auto_topups_target_balance_or_pack",
        ),
        sa.CheckConstraint(
            "target_balance IS NULL OR target_balance > threshold", name="ck_auto_topups_target"
        ),
    )


def _attempts() -> None:
    statuses = ("queued", "processing", "succeeded", "declined", "needs_action", "canceled")
    op.create_table(
        "auto_topup_attempts",
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("in_flight", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("payment_method_id", sa.String(255), nullable=False),
        sa.Column("card_fingerprint", sa.String(255), nullable=True),
        sa.Column("payment_intent_id", sa.String(255), nullable=True),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("decline_code", sa.String(64), nullable=True),
        sa.Column("transfer_id", sa.String(32), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "id", name="pk_auto_topup_attempts"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_auto_topup_attempts_account_id"
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name="fk_auto_topup_attempts_transfer_id"
        ),
        sa.UniqueConstraint("in_flight", name="uq_auto_topup_attempts_in_flight"),
        sa.UniqueConstraint("payment_intent_id", name="uq_auto_topup_attempts_payment_intent_id"),
        sa.CheckConstraint(_one_of("status", statuses), name="ck_auto_topup_attempts_status"),
        sa.CheckConstraint("credits > 0", name="ck_auto_topup_attempts_credits_positive"),
    )
    op.create_index(
        "ix_auto_topup_attempts_card_fingerprint_created_at",
        "auto_topup_attempts",
        ["card_fingerprint", "created_at"],
    )


def upgrade() -> None:
    op.add_column("accounts", sa.Column("auto_topup_below", sa.BigInteger, nullable=True))
    _rules()
    _attempts()


def downgrade() -> None:
    op.drop_table("auto_topup_attempts")
    op.drop_table("auto_topups")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("auto_topup_below")
