"""Request and response bodies of ``/v1/proxy-keys``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from creditsd.kit.fields import (
    AccountId,
    AmountIn,
    AmountOut,
    NoNul,
    Seconds,
    StrictRequest,
    WholeNumber,
)
from creditsd.kit.money import Money
from creditsd.proxy_keys.models import ProxyKey

RateLimit = Annotated[int, Field(gt=0, le=1_000_000), WholeNumber]


class ProxyKeyCreate(StrictRequest):
    """A key for one account's calls to ``/openai/v1``."""

    account_id: AccountId
    member: AccountId | None = Field(
        None,
        description="A member of the account (404 unless it has it now): every call "
        "through the key is that member's, counted against its limits.",
    )
    expires_in: Seconds | None = Field(
        None, description="Lifetime in seconds (at most ten years); none: until revoked."
    )
    limit: AmountIn | None = Field(
        None,
        description="The most its calls may spend, in credits: what they were charged plus "
        "what calls in flight hold. None: only the account's balance limits it.",
    )
    name: Annotated[str, Field(min_length=1, max_length=64), NoNul] | None = Field(
        None, description="Your own label for it."
    )
    rate_limit: RateLimit | None = Field(
        None, description="Requests a minute; none: `[proxy] rate_limit_per_minute`."
    )


class ProxyKeyOut(BaseModel):
    """A proxy key: never its secret, only a hint of it."""

    id: str
    account_id: str = Field(description="The only account it pays for (its id).")
    member: str | None = Field(description="The account's member its calls are for, if any.")
    app: str = Field(description="The name of the app key that minted it.")
    name: str | None
    hint: str = Field(description="The secret's start and last four characters.")
    limit: AmountOut | None = Field(description="Its spend limit in credits, if any.")
    spent: AmountOut = Field(description="What its calls were charged, in credits.")
    held: AmountOut = Field(description="What its calls in flight hold, in credits.")
    rate_limit: int | None = Field(description="Requests a minute; none: the default.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ProxyKey, money: Money) -> ProxyKeyOut:
        """Render a key, amounts in credits."""
        return cls(
            id=key.id,
            account_id=key.account_id,
            member=key.member_id,
            app=key.app,
            name=key.name,
            hint=key.hint,
            limit=None if key.spend_limit is None else money.to_decimal(key.spend_limit),
            spent=money.to_decimal(key.spent),
            held=money.to_decimal(key.held),
            rate_limit=key.rate_limit,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class ProxyKeyCreated(ProxyKeyOut):
    """A new proxy key and its secret."""

    secret: str = Field(
        description="cdp_…: the key itself, shown this once (only its hash is kept). Use it "
        "as the API key of an OpenAI SDK pointed at /openai/v1."
    )


class ProxyKeyPage(BaseModel):
    """Proxy keys, newest first."""

    data: list[ProxyKeyOut]
    next_cursor: str | None
