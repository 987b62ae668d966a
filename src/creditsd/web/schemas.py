"""Request and response bodies of ``/v1/portal-sessions``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from creditsd.api.schemas.stripe import WebUrl
from creditsd.kit.fields import AccountId, StrictRequest


class PortalSessionCreate(StrictRequest):
    """Open the billing page for one account, or for one member of a wallet: the app's
    signed-in user."""

    account_id: AccountId
    return_url: WebUrl = Field(
        description="Where the billing page's back link takes the user (http or https)."
    )
    member: AccountId | None = Field(
        None,
        description="A member of the wallet `account_id`: the link opens that member's page "
        "(what each of their limits leaves and when it resets; the wallet's balance only "
        "under `[web] members_see_wallet_balance`). One the wallet does not have is 404 "
        "`member_not_found`.",
    )


class PortalSession(BaseModel):
    """A portal link: send the user's browser to ``url`` before ``expires_at``."""

    url: str = Field(description="Opens this account's billing page, until `expires_at`.")
    expires_at: datetime = Field(description="When the link stops working ([web] link_seconds).")
