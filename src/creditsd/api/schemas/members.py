"""Request and response bodies of a wallet's members and spend limits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from creditsd.api.params import units
from creditsd.kit.fields import AmountIn, AmountOut, NoNul, StrictRequest
from creditsd.kit.money import Money
from creditsd.ledger.limits import Tally
from creditsd.members.service import LimitSpec, Member

PeriodName = Literal["day", "week", "month", "lifetime"]


class LimitIn(StrictRequest):
    """At most ``amount`` credits spent (and held by open holds) per ``period``."""

    amount: AmountIn = Field(description="Credits; 0 blocks all spend.")
    period: PeriodName = Field(
        description="A calendar day, week (from Monday) or month in the wallet's time zone "
        "(UTC unless set), or the limit's lifetime."
    )
    mode: Literal["hard", "soft"] = Field(
        "hard", description="hard: refuse what would pass it (402 limit_reached); soft: warn."
    )


Limits = Annotated[list[LimitIn], Field(max_length=4)]


class LimitsPut(StrictRequest):
    """The whole set of limits of one subject: those left out are removed."""

    limits: Limits


class MemberPut(StrictRequest):
    """A member of the wallet."""

    display_name: Annotated[str, Field(min_length=1, max_length=128), NoNul] | None = None
    limits: Limits | None = Field(
        None, description="The member's limits, replacing its set; left out: unchanged."
    )


class LimitOut(BaseModel):
    """A limit and where its current window stands."""

    scope: Literal["wallet", "member", "app", "key"]
    subject: str | None = Field(description="The member, app or proxy key; null: the wallet.")
    period: PeriodName
    mode: Literal["hard", "soft"]
    amount: AmountOut
    spent: AmountOut = Field(description="Spent in the current window.")
    held: AmountOut = Field(description="Reserved now by open holds.")
    remaining: AmountOut = Field(description="What is left: amount − spent − held, at least 0.")
    window_start: datetime
    resets_at: datetime | None = Field(description="When the next window starts; null: never.")
    since: datetime = Field(description="When it was set: no window starts before.")

    @classmethod
    def of(cls, tally: Tally, money: Money) -> LimitOut:
        """Render a limit's state, amounts in credits."""
        limit = tally.limit
        return cls(
            scope=limit.scope,
            subject=limit.subject or None,
            period=limit.period,
            mode=limit.mode,
            amount=money.to_decimal(limit.amount),
            spent=money.to_decimal(tally.spent),
            held=money.to_decimal(tally.held),
            remaining=money.to_decimal(max(tally.left(), 0)),
            window_start=tally.window.start,
            resets_at=tally.window.end,
            since=limit.since,
        )


class LimitList(BaseModel):
    """Every limit on a wallet."""

    data: list[LimitOut]

    @classmethod
    def of(cls, tallies: list[Tally], money: Money) -> LimitList:
        """Render limits, amounts in credits."""
        return cls(data=[LimitOut.of(tally, money) for tally in tallies])


def limit_specs(money: Money, limits: list[LimitIn]) -> list[LimitSpec]:
    """The limits asked for, amounts in minor units (422 naming a bad amount)."""
    return [
        LimitSpec(units(money, limit.amount, "amount", allow_zero=True), limit.period, limit.mode)
        for limit in limits
    ]


class MemberOut(BaseModel):
    """A member of a wallet and its limits."""

    account_id: str
    member_id: str
    display_name: str | None
    limits: list[LimitOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, member: Member, money: Money) -> MemberOut:
        """Render a member, amounts in credits."""
        return cls(
            account_id=member.account_id,
            member_id=member.member_id,
            display_name=member.display_name,
            limits=[LimitOut.of(tally, money) for tally in member.limits],
            created_at=member.created_at,
            updated_at=member.updated_at,
        )


class MemberPage(BaseModel):
    """A wallet's members by id."""

    data: list[MemberOut]
    next_cursor: str | None
