"""Who pays for a call to ``/openai/v1``, for which member, and whether its key may call
again yet.

Two ways to pay:

- an app key (``Authorization: Bearer cdk_…``, scope ``app``) and the account in
  ``X-Creditsd-Account``: the app's backend calling for any of its users;
- a proxy key an app minted for one account (``Bearer cdp_…``, ``POST /v1/proxy-keys``),
  which pays only for that account and within its spend limit. ``X-Creditsd-Account`` is
  then not needed; if sent it must name the key's account (its id, as minting answered),
  else 403 ``wrong_account``: a client is never billed to another account than it names.

A call is for a member of the paying wallet when ``X-Creditsd-Member`` names one (an id
as the members API takes it: 1-128 letters, digits and ``_ - . : @ + =``, else 422), or
when its proxy key was minted for one: its hold and capture then carry the member and
count against the member's spend limits (402 ``limit_reached`` past a hard one). A
member the wallet does not have is 404 ``member_not_found``, when the hold is refused.
A key minted for a member is that member's on every call; a header naming another is
403 ``wrong_member``, as an account is. A key minted for no member pays for whichever
member the header names, if any: whoever holds it may spend the whole wallet anyway.

Each key is held to its requests a minute (:class:`RateLimiter`, in this process): a
proxy key to its own ``rate_limit`` or ``[proxy] rate_limit_per_minute``, an app key to
``[proxy] app_rate_limit_per_minute``; past it, 429 with ``Retry-After``. A proxy key is
remembered as API keys are (``KeyCache``), and checked again under its account's lock
when its hold opens, so a revoked one pays for nothing more at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials

from creditsd.api.auth import API_KEY, KeyCache, admit, bearer, ledger_of
from creditsd.keys.service import ApiKey
from creditsd.kit.errors import CreditsError, Forbidden, RateLimited, Unauthenticated
from creditsd.kit.ids import ACCOUNT_ID_PATTERN
from creditsd.ledger.errors import WrongAccount
from creditsd.proxy.ratelimit import RateLimiter
from creditsd.proxy_keys import service as proxy_keys
from creditsd.proxy_keys.models import ProxyKey

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class MissingAccount(CreditsError):
    """An app key's call names no account to pay."""

    code = "missing_account"
    status = 400

    def __init__(self) -> None:
        super().__init__("X-Creditsd-Account names who pays")


class WrongMember(Forbidden):
    """A proxy key minted for a member pays only for that member's calls."""

    code = "wrong_member"

    def __init__(self, key_id: str, member_id: str) -> None:
        super().__init__(
            f"this proxy key pays only for member {member_id!r}",
            key_id=key_id,
            member_id=member_id,
        )


MEMBER_HEADER_PATTERN = f"^{ACCOUNT_ID_PATTERN}$"  # a member id, as the members API takes it


@dataclass(frozen=True, slots=True)
class Payer:
    """Who pays for a call: the account (an id or alias), the app its hold and capture
    are written under, the proxy key paying within its limit (None: an app key), and
    the wallet's member the call is for (None: none)."""

    account_id: str
    app: str
    proxy_key_id: str | None = None
    member: str | None = None


async def _caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> ApiKey | ProxyKey:
    """The request's proxy key, or its API key if its scope includes ``scope``; once the
    key's rate limit lets the request through (429 otherwise)."""
    ledger = ledger_of(request)
    settings = ledger.settings.proxy
    key: ApiKey | ProxyKey
    if credentials is not None and credentials.credentials.startswith(proxy_keys.SECRET_PREFIX):
        cache: KeyCache[ProxyKey] = request.app.state.proxy_key_cache
        found = await cache.authenticate(ledger, credentials.credentials)
        if found is None:
            raise Unauthenticated("unknown or revoked proxy key")
        request.scope[API_KEY] = key = found  # for the access log
        per_minute = key.rate_limit or settings.rate_limit_per_minute
    else:
        key = await admit(request, credentials, scope)
        per_minute = settings.app_rate_limit_per_minute
    limiter: RateLimiter = request.app.state.rate_limiter
    if wait := limiter.take(key.id, per_minute):
        raise RateLimited(f"this key may make {per_minute} requests a minute", wait)
    return key


async def reader(request: Request, credentials: Credentials) -> ApiKey | ProxyKey:
    """A key that may read ``/openai/v1``: an API key of scope ``read`` or a proxy key."""
    return await _caller(request, credentials, "read")


async def payer(
    request: Request,
    credentials: Credentials,
    x_creditsd_account: Annotated[
        str | None,
        Header(
            max_length=255,
            description="The account that pays: required with an app key; with a proxy "
            "key, optional and its own account.",
        ),
    ] = None,
    x_creditsd_member: Annotated[
        str | None,
        Header(
            pattern=MEMBER_HEADER_PATTERN,
            description="The paying wallet's member the call is for, counted against its "
            "limits; with a proxy key minted for a member, optional and that member.",
        ),
    ] = None,
) -> Payer:
    """Who pays for this call, and for which member (see the module's docstring)."""
    key = await _caller(request, credentials, "app")
    if isinstance(key, ProxyKey):
        if x_creditsd_account not in (None, key.account_id):
            raise WrongAccount(key.id, key.account_id)
        if key.member_id is None:
            return Payer(key.account_id, key.app, key.id, x_creditsd_member)
        if x_creditsd_member not in (None, key.member_id):
            raise WrongMember(key.id, key.member_id)
        return Payer(key.account_id, key.app, key.id, key.member_id)
    if x_creditsd_account is None:
        raise MissingAccount
    return Payer(x_creditsd_account, key.name, member=x_creditsd_member)


Reader = Annotated[ApiKey | ProxyKey, Depends(reader)]
Paying = Annotated[Payer, Depends(payer)]
