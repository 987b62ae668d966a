"""``/v1/portal-sessions``: an app asks for a link that opens its user's billing page (an
account's own, or a wallet member's)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from creditsd.api.auth import AppKey, LedgerDep
from creditsd.api.errors import error_responses
from creditsd.api.http import ExactJSONResponse, StrictJSONRoute
from creditsd.api.params import respond
from creditsd.members import service as members
from creditsd.web import portal
from creditsd.web.pages import signer
from creditsd.web.schemas import PortalSession, PortalSessionCreate

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute, tags=["billing page"])


@router.post(
    "/portal-sessions",
    response_model=PortalSession,
    status_code=201,
    responses=error_responses(403, 404),
)
async def create_portal_session(
    body: PortalSessionCreate, request: Request, ledger: LedgerDep, _key: AppKey
) -> ExactJSONResponse:
    """A signed link to the billing page of one account, for the app's signed-in user.

    The link works for ``[web] link_seconds`` (default 300) and shows only this account;
    opening it starts a billing page session of ``[web] portal_session_seconds``. It is
    made for an account's own id, also when asked by an alias. An account that does not
    exist yet gets a link when accounts are created on first use (``[accounts]
    auto_create``; its page shows it as its first write will create it), else 404:
    asking for a link never creates an account.

    With ``member``, the link opens that member's page of the wallet: their limits'
    allowance in the current windows, never the wallet's history nor other members'
    spend. The wallet must exist and have the member (else 404 ``account_not_found`` or
    ``member_not_found``).
    """
    if (member := body.member) is None:
        account_id = (await ledger.get_account(body.account_id)).id
    else:
        standing = await ledger.database.read(
            lambda conn, now: members.member_standing(conn, body.account_id, member, now)
        )
        account_id = standing.member.account_id
    url, expires_at = portal.link(
        await signer(request), request, ledger, account_id, body.return_url, body.member
    )
    return respond(PortalSession(url=url, expires_at=expires_at), 201)
