"""What every page shares: templates, the page secret, session cookies, CSRF, error pages.

The billing page's sessions are signed cookies (:mod:`creditsd.web.signing`), so any
process of a deployment serves any page; the admin console's are random tokens kept
hashed in ``web_tokens`` (:mod:`creditsd.web.admin.console`). Both are ``HttpOnly``,
``SameSite=Lax``, ``Secure`` over HTTPS and scoped to their section's path. Every form
carries a CSRF token derived from its session; a POST without the right one is refused
(403) before anything happens (the console's sign-in form, which comes before any
session, carries a token it also sets as a cookie).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.staticfiles import StaticFiles

from creditsd.inprocess import Ledger
from creditsd.kit.errors import CreditsError, Forbidden
from creditsd.kit.rows import insert_or_skip
from creditsd.price_settings import noun
from creditsd.tables import ledger_meta
from creditsd.web.signing import Signer, new_secret

STATIC_PATH = "/static/web"
_STATIC = Path(__file__).parent / "static"
SECRET_ROW = "pages_secret"  # noqa: S105  # a row name: where an unset [web] secret is kept
CSRF_FIELD = "csrf"

templates = Environment(
    loader=PackageLoader("creditsd.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def credits(value: Decimal | int) -> str:
    """An amount of credits as people read it: thousands grouped, no trailing zeros."""
    text = f"{Decimal(value):,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def counted(number: Decimal | int, one: str, many: str | None = None) -> str:
    """A number as people read it with its noun: ``1 credit``, ``1.5 credits``, ``1,234
    input tokens``."""
    return f"{credits(number)} {noun(number, one, many)}"


def day_label(day: date) -> str:
    """A day as people read it: ``1 Dec 2026``."""
    return f"{day.day} {day:%b %Y}"


def moment(value: datetime | None, *, date_only: bool = False) -> Markup:
    """A moment for a page, in UTC, which the pages' script (``static/local-time.js``)
    rewrites in the browser's time zone, leaving UTC in the title: ``<time
    datetime="2026-12-01T04:41:00Z" title="1 Dec 2026, 04:41 UTC">1 Dec 2026, 04:41
    UTC</time>``. With ``date_only``, the day alone; nothing for no moment."""
    if value is None:
        return Markup()
    utc = value.astimezone(UTC)
    day = day_label(utc)
    shown = day if date_only else f"{day}, {utc:%H:%M} UTC"
    return Markup('<time datetime="{}" title="{}"{}>{}</time>').format(  # escapes each part
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{day}, {utc:%H:%M} UTC",
        Markup(" data-date") if date_only else "",
        shown,
    )


def zoned(value: datetime | None, zone: str | None) -> Markup:
    """A moment in a named IANA time zone (None: UTC), with the zone written beside it, as
    a wallet's limits count their windows in it; the pages' script leaves it as written:
    ``<time datetime="2026-12-08T00:00:00Z" data-zone>8 Dec 2026, 00:00 UTC</time>``, and
    in Europe/Berlin ``8 Dec 2026, 00:00 (Europe/Berlin)``. Nothing for no moment."""
    if value is None:
        return Markup()
    local = value.astimezone(ZoneInfo(zone or "UTC"))
    named = "UTC" if zone in (None, "UTC") else f"({zone})"
    return Markup('<time datetime="{}" data-zone>{}, {:%H:%M} {}</time>').format(
        value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), day_label(local), local, named
    )


# A limit's period as its amount reads with it: "1,000 credits a day".
PER_PERIOD = {"day": "a day", "week": "a week", "month": "a month", "lifetime": "in all"}

templates.filters.update(credits=credits, noun=noun, counted=counted, moment=moment, zoned=zoned)
templates.globals.update(per_period=PER_PERIOD)


def install(app: FastAPI) -> None:
    """Serve the pages' stylesheet and images."""
    app.mount(STATIC_PATH, StaticFiles(directory=str(_STATIC)), name="web-static")


async def signer(request: Request) -> Signer:
    """The deployment's signer: ``[web] secret``, else one made on first use and kept in
    the database, so that every process of a deployment signs alike."""
    found: Signer | None = getattr(request.app.state, "page_signer", None)
    if found is not None:
        return found
    ledger: Ledger = request.app.state.ledger
    configured = ledger.settings.web.secret
    if configured is not None:
        secret = configured.get_secret_value()
    else:
        secret = await ledger.database.write(_stored_secret)
    request.app.state.page_signer = made = Signer(secret)
    return made


async def _stored_secret(conn: AsyncConnection, _now: datetime) -> str:
    insert = insert_or_skip(conn)
    await conn.execute(
        insert(ledger_meta).values(key=SECRET_ROW, value=new_secret()).on_conflict_do_nothing()
    )
    query = select(ledger_meta.c.value).where(ledger_meta.c.key == SECRET_ROW)
    return str((await conn.execute(query)).scalar_one())


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: whose session it is, and the CSRF token its forms carry."""

    subject: str  # the account (billing page) or the admin key's id (console)
    csrf: str
    claims: dict[str, Any]


def new_session_id() -> str:
    """A session's random id, from which its CSRF token is derived."""
    return secrets.token_urlsafe(16)


def put_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    seconds: int,
    path: str,
    samesite: Literal["lax", "strict"] = "lax",
) -> None:
    """Set a page cookie: ``HttpOnly``, and ``Secure`` when browsers reach creditsd over
    HTTPS (this request, or ``[web] public_url`` for one that a TLS proxy passed on)."""
    public_url = request.app.state.ledger.settings.web.public_url or ""
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path=path,
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https" or public_url.startswith("https://"),
    )


def set_session(
    response: Response,
    request: Request,
    signer_: Signer,
    name: str,
    claims: dict[str, Any],
    lifetime: timedelta,
    now: datetime,
    path: str | None = None,
) -> None:
    """Put a signed session cookie ``creditsd_<name>`` on ``response``, scoped to ``path``
    (else ``/<name>``)."""
    token = signer_.sign(name, {"sid": new_session_id(), **claims}, now + lifetime)
    seconds = int(lifetime.total_seconds())
    put_cookie(
        response, request, f"creditsd_{name}", token, seconds=seconds, path=path or f"/{name}"
    )


def clear_session(response: Response, name: str, path: str | None = None) -> None:
    """Sign the browser out of ``path`` (else ``/<name>``)."""
    response.delete_cookie(f"creditsd_{name}", path=path or f"/{name}")


def read_session(request: Request, signer_: Signer, name: str, now: datetime) -> Session | None:
    """The live session of ``/<name>`` the browser sent, if any."""
    token = request.cookies.get(f"creditsd_{name}")
    if not token:
        return None
    try:
        claims = signer_.verify(name, token, now)
    except CreditsError:
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str):
        return None
    return Session(subject, signer_.tag("csrf", str(claims.get("sid"))), claims)


def check_csrf(session: Session, submitted: object) -> None:
    """Refuse a form whose CSRF token is not its session's (403)."""
    if not isinstance(submitted, str) or not hmac.compare_digest(
        submitted.encode(), session.csrf.encode()
    ):
        raise Forbidden("this form has expired or did not come from this page; reload it")


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A rendered template; pages are never cached, nor framed by other sites."""
    html = templates.get_template(name).render(request=request, static=STATIC_PATH, **context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "script-src 'self' https://js.stripe.com; frame-src https://js.stripe.com "
    "https://checkout.stripe.com; connect-src 'self' https://api.stripe.com; "
    "form-action 'self' https://checkout.stripe.com https://hooks.stripe.com; "
    "frame-ancestors 'none'",
}


def redirect(url: str) -> RedirectResponse:
    """See other: where a form's POST sends the browser next."""
    return RedirectResponse(url, status_code=303, headers=PAGE_HEADERS)


PAGE_PREFIXES = ("/billing", "/admin")


def is_page(request: Request) -> bool:
    """Whether the request is for a page (its errors are pages too)."""
    return request.url.path.startswith(PAGE_PREFIXES)


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None
) -> HTMLResponse:
    """A failure as a page: what went wrong in plain words, never the internals, and the
    way back to the billing page while its session lasts (not after a 401)."""
    billing = request.url.path.startswith("/billing") and status != 401
    back = "/billing" if billing else None
    response = page(request, "error.html", status, status_code=status, message=message, back=back)
    response.headers.update(headers or {})
    return response
