"""What Client and AsyncClient share: building requests, deciding retries, reading answers.

Each API method is described once here as a :class:`Call` (method, path, body, idempotency
key, and how to read the answer); the sync and async clients only send it.
"""

from __future__ import annotations

import email.utils
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from creditsd.client import _json
from creditsd.client._autotopup import AutoTopup, AutoTopupCardSession
from creditsd.client._errors import APIError, TransportError, error_for
from creditsd.client._models import (
    Account,
    AuditRecordPage,
    Capture,
    CheckoutSession,
    Hold,
    Limit,
    LimitState,
    Member,
    MemberPage,
    Pack,
    PortalSession,
    ProxyKey,
    ProxyKeyPage,
    Quote,
    Runway,
    TransactionPage,
    Transfer,
    Usage,
    UsageResult,
    Verification,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookEndpoint,
    credits,
)

VERSION = "0.1.0"  # creditsd-client's, as clients/python/pyproject.toml says

Amount = int | str | Decimal
"""Credits as a caller writes them: never a float, which cannot hold 0.1 exactly."""

T = TypeVar("T")

MAX_BACKOFF = 10.0
"""The longest pause between two attempts that the exponential backoff grows to (seconds)."""

MAX_RETRY_AFTER = 30.0
"""A longer Retry-After than this is not waited out: the error goes to the caller at once."""

# Failures where the request may not have reached the server, or its answer was lost.
# A retry is safe because every write carries the same idempotency key each time.
_RETRYABLE = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request, described independently of how it is sent."""

    method: str
    path: str
    read: Callable[[Any, bool], T]
    params: dict[str, str | int] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    once: bool = False  # never retried: a repeat would not be the same request (a mint)


def new_idempotency_key() -> str:
    """A key for a write the caller did not key: the same one goes with every retry."""
    return f"sdk_{uuid.uuid4().hex}"


class BaseClient:
    """Settings, request building and the retry policy shared by Client and AsyncClient."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        max_retries: int,
        backoff: float,
        app: str | None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url:
            raise ValueError("base_url is the server's address, e.g. 'http://127.0.0.1:8000'")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("api_key is a creditsd API key (creditsd keys create)")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries is a whole number, 0 or more")
        if backoff < 0 or timeout <= 0:
            raise ValueError("backoff is 0 or more seconds and timeout more than 0")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        agent = f"creditsd-python/{VERSION} httpx/{httpx.__version__}"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"{agent} {app}" if app else agent,
        }

    # Accounts and transfers ------------------------------------------------------------

    def _get_account(self, account_id: str) -> Call[Account]:
        return Call("GET", _account_path(account_id), lambda data, _: Account.from_json(data))

    def _get_balance(self, account_id: str) -> Call[Decimal]:
        return Call("GET", _account_path(account_id), lambda data, _: credits(data["available"]))

    def _initialize_account(
        self,
        account_id: str,
        *,
        initial_grant: Amount | None,
        overdraft_limit: Amount | None,
        aliases: Iterable[str],
        metadata: Mapping[str, Any] | None,
        status: str | None,
        low_balance_threshold: Amount | None,
        time_zone: str | None,
    ) -> Call[Account]:
        if status is not None and not isinstance(status, str):
            raise TypeError("status is 'active', 'frozen' or 'closed'")
        if time_zone is not None and not isinstance(time_zone, str):
            raise TypeError("time_zone is an IANA time zone's name, like 'Europe/Berlin'")
        body: dict[str, Any] = {}
        if initial_grant is not None:
            body["initial_grant"] = amount_of(initial_grant, "initial_grant")
        if overdraft_limit is not None:
            body["overdraft_limit"] = amount_of(overdraft_limit, "overdraft_limit")
        if isinstance(aliases, str):
            raise TypeError("aliases is a list of account ids, not one string")
        if aliases := list(aliases):
            body["aliases"] = aliases
        if metadata is not None:
            body["metadata"] = metadata
        if status is not None:
            body["status"] = status
        if low_balance_threshold is not None:
            body["low_balance_threshold"] = amount_of(
                low_balance_threshold, "low_balance_threshold"
            )
        if time_zone is not None:
            body["time_zone"] = time_zone
        return self._write(
            "PUT",
            _account_path(account_id),
            body or None,
            None,
            lambda data, _: Account.from_json(data),
        )

    def _charge(
        self,
        account_id: str,
        amount: Amount | None,
        *,
        feature: str | None,
        quantity: Amount | None,
        usage: Usage | None,
        member: str | None,
        description: str | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Call[Transfer]:
        body = {"account_id": account_id, **priced(amount, feature, quantity, usage)}
        body.update(_present(member=member, description=description, metadata=metadata))
        return self._write("POST", "/v1/charges", body, idempotency_key, _read_transfer)

    def _grant(
        self,
        account_id: str,
        amount: Amount,
        *,
        source: str | None,
        expires_at: datetime | None,
        priority: int | None,
        reason: str | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Call[Transfer]:
        if source is not None and not isinstance(source, str):
            raise TypeError("source is 'promotion' or 'adjustment'")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise TypeError(f"priority is a whole number from 0 to 1000, not {priority!r}")
        body = {"account_id": account_id, "amount": amount_of(amount)}
        body.update(
            _present(
                source=source,
                expires_at=None if expires_at is None else instant_of(expires_at, "expires_at"),
                priority=priority,
                reason=reason,
                metadata=metadata,
            )
        )
        return self._write("POST", "/v1/grants", body, idempotency_key, _read_transfer)

    def _get_transactions(
        self, account_id: str, *, limit: int, cursor: str | None
    ) -> Call[TransactionPage]:
        return Call(
            "GET",
            f"{_account_path(account_id)}/transactions",
            lambda data, _: TransactionPage.from_json(data),
            params=_page(limit, cursor),
        )

    def _get_transaction(self, transfer_id: str) -> Call[Transfer]:
        return Call("GET", f"/v1/transactions/{_segment(transfer_id)}", _read_transfer)

    def _get_runway(self, account_id: str) -> Call[Runway]:
        return Call(
            "GET", f"{_account_path(account_id)}/runway", lambda data, _: Runway.from_json(data)
        )

    def _verify_balance(self, account_id: str) -> Call[Verification]:
        return Call("GET", f"{_account_path(account_id)}/verify", _read_verification)

    def _rebuild_balance(self, account_id: str) -> Call[Verification]:
        return self._write(
            "POST", f"{_account_path(account_id)}/rebuild", None, None, _read_verification
        )

    # Pricing and usage -------------------------------------------------------------------

    def _quote(
        self,
        *,
        amount: Amount | None,
        feature: str | None,
        quantity: Amount | None,
        usage: Usage | None,
    ) -> Call[Quote]:
        body = _json.dumps(priced(amount, feature, quantity, usage))
        return Call(
            "POST",
            "/v1/quotes",
            lambda data, _: Quote.from_json(data),
            body=body,
            headers={"Content-Type": "application/json"},
        )

    def _send_usage(self, events: Iterable[Mapping[str, Any]]) -> Call[list[UsageResult]]:
        if isinstance(events, Mapping):
            raise TypeError("send_usage takes a list of events; wrap a single event in a list")
        return self._write(
            "POST",
            "/v1/usage",
            {"events": list(events)},
            None,
            lambda data, _: [UsageResult.from_json(item) for item in data["results"]],
        )

    # Holds ------------------------------------------------------------------------------

    def _hold(
        self,
        account_id: str,
        amount: Amount | None,
        *,
        feature: str | None,
        quantity: Amount | None,
        usage: Usage | None,
        member: str | None,
        expires_in: int | None,
        description: str | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Call[Hold]:
        body = {"account_id": account_id, **priced(amount, feature, quantity, usage)}
        if expires_in is not None:
            body["expires_in"] = seconds_of(expires_in)
        body.update(_present(member=member, description=description, metadata=metadata))
        return self._write("POST", "/v1/holds", body, idempotency_key, _read_hold)

    def _capture(
        self,
        hold_id: str,
        amount: Amount | None,
        *,
        feature: str | None,
        quantity: Amount | None,
        usage: Usage | None,
        final: bool,
        description: str | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Call[Capture]:
        if not isinstance(final, bool):
            raise TypeError("final is True or False")
        body = {**priced(amount, feature, quantity, usage), "final": final}
        body.update(_present(description=description, metadata=metadata))
        # Without a key of the caller's, the server keys a final capture by its hold, which
        # is steadier than a fresh key: a capture repeated by the caller's own retry (a job
        # run twice) replays too, where a new key would meet 409 hold_not_open.
        return self._write(
            "POST",
            f"{_hold_path(hold_id)}/capture",
            body,
            idempotency_key,
            lambda data, replayed: Capture.from_json(data, replayed=replayed),
            key_by_server=final,
        )

    def _extend(self, hold_id: str, expires_in: int) -> Call[Hold]:
        body = {"expires_in": seconds_of(expires_in)}
        return self._write("POST", f"{_hold_path(hold_id)}/extend", body, None, _read_hold)

    def _release(self, hold_id: str) -> Call[Hold]:
        return self._write("POST", f"{_hold_path(hold_id)}/release", None, None, _read_hold)

    def _get_hold(self, hold_id: str) -> Call[Hold]:
        return Call("GET", _hold_path(hold_id), _read_hold)

    # Team wallets: members and spend limits ----------------------------------------------

    def _put_member(
        self,
        account_id: str,
        member_id: str,
        *,
        display_name: str | None,
        limits: Iterable[Limit] | None,
    ) -> Call[Member]:
        body: dict[str, Any] = _present(display_name=display_name)
        if limits is not None:
            body["limits"] = limits_of(limits)
        return self._write(
            "PUT",
            _member_path(account_id, member_id),
            body,
            None,
            lambda data, _: Member.from_json(data),
        )

    def _list_members(self, account_id: str, *, limit: int, cursor: str | None) -> Call[MemberPage]:
        return Call(
            "GET",
            f"{_account_path(account_id)}/members",
            lambda data, _: MemberPage.from_json(data),
            params=_page(limit, cursor),
        )

    def _remove_member(self, account_id: str, member_id: str) -> Call[Member]:
        return self._write(
            "DELETE",
            _member_path(account_id, member_id),
            None,
            None,
            lambda data, _: Member.from_json(data),
        )

    def _list_limits(self, account_id: str) -> Call[list[LimitState]]:
        return Call("GET", f"{_account_path(account_id)}/limits", _read_limits)

    def _set_limits(self, path: str, limits: Iterable[Limit]) -> Call[list[LimitState]]:
        return self._write("PUT", path, {"limits": limits_of(limits)}, None, _read_limits)

    def _set_wallet_limits(
        self, account_id: str, limits: Iterable[Limit]
    ) -> Call[list[LimitState]]:
        return self._set_limits(f"{_account_path(account_id)}/limits", limits)

    def _set_app_limits(
        self, account_id: str, app: str, limits: Iterable[Limit]
    ) -> Call[list[LimitState]]:
        return self._set_limits(f"{_account_path(account_id)}/apps/{_segment(app)}/limits", limits)

    def _set_proxy_key_limits(self, key_id: str, limits: Iterable[Limit]) -> Call[list[LimitState]]:
        return self._set_limits(f"/v1/proxy-keys/{_segment(key_id)}/limits", limits)

    # Proxy keys -----------------------------------------------------------------------------

    def _mint_proxy_key(
        self,
        account_id: str,
        *,
        member: str | None,
        limit: Amount | None,
        expires_in: int | None,
        name: str | None,
        rate_limit: int | None,
    ) -> Call[ProxyKey]:
        body: dict[str, Any] = {"account_id": account_id}
        body.update(_present(member=member, name=name, rate_limit=rate_limit))
        if limit is not None:
            body["limit"] = amount_of(limit, "limit")
        if expires_in is not None:
            body["expires_in"] = seconds_of(expires_in)
        # The secret is never stored, so a mint has no idempotency key and is never retried.
        call = self._write(
            "POST",
            "/v1/proxy-keys",
            body,
            None,
            lambda data, _: ProxyKey.from_json(data),
            key_by_server=True,
        )
        return replace(call, once=True)

    def _list_proxy_keys(
        self, account_id: str | None, *, limit: int, cursor: str | None
    ) -> Call[ProxyKeyPage]:
        params = _page(limit, cursor)
        if account_id is not None:
            params["account_id"] = account_id
        return Call("GET", "/v1/proxy-keys", lambda data, _: ProxyKeyPage.from_json(data), params)

    def _revoke_proxy_key(self, key_id: str) -> Call[ProxyKey]:
        return self._write(
            "DELETE",
            f"/v1/proxy-keys/{_segment(key_id)}",
            None,
            None,
            lambda data, _: ProxyKey.from_json(data),
        )

    # Credit packs ---------------------------------------------------------------------------

    def _list_packs(self) -> Call[list[Pack]]:
        return Call(
            "GET", "/v1/packs", lambda data, _: [Pack.from_json(item) for item in data["data"]]
        )

    def _create_checkout_session(
        self,
        account_id: str,
        pack: str,
        *,
        success_url: str,
        cancel_url: str | None,
        ui_mode: str,
        idempotency_key: str | None,
    ) -> Call[CheckoutSession]:
        if ui_mode not in {"hosted", "embedded"}:
            raise ValueError(f"ui_mode is 'hosted' or 'embedded', not {ui_mode!r}")
        if ui_mode == "hosted" and cancel_url is None:
            raise TypeError("cancel_url is required when ui_mode is 'hosted'")
        body: dict[str, Any] = {
            "account_id": account_id,
            "pack": pack,
            "success_url": success_url,
        }
        body.update(_present(cancel_url=cancel_url, ui_mode=ui_mode))
        return self._write(
            "POST",
            "/v1/checkout-sessions",
            body,
            idempotency_key,
            lambda data, _: CheckoutSession.from_json(data),
        )

    # Auto top-up ------------------------------------------------------------------------------

    def _get_auto_topup(self, account_id: str) -> Call[AutoTopup]:
        return Call("GET", _auto_topup_path(account_id), _read_auto_topup)

    def _set_auto_topup(
        self,
        account_id: str,
        *,
        enabled: bool,
        threshold: Amount,
        target_balance: Amount | None,
        pack: str | None,
        monthly_cap: Amount,
    ) -> Call[AutoTopup]:
        if not isinstance(enabled, bool):
            raise TypeError("enabled is True or False")
        if (target_balance is None) == (pack is None):
            raise TypeError("give exactly one of target_balance and pack")
        if pack is not None and not isinstance(pack, str):
            raise TypeError("pack is the name of a credit pack on sale, e.g. '10k'")
        body: dict[str, Any] = {
            "enabled": enabled,
            "threshold": amount_of(threshold, "threshold"),
            "monthly_cap": amount_of(monthly_cap, "monthly_cap"),
        }
        if target_balance is not None:
            body["target_balance"] = amount_of(target_balance, "target_balance")
        else:
            body["pack"] = pack
        # A PUT of the whole rule is the same however often it is sent: no key needed.
        return self._write(
            "PUT", _auto_topup_path(account_id), body, None, _read_auto_topup, key_by_server=True
        )

    def _create_auto_topup_card_session(
        self, account_id: str, success_url: str, cancel_url: str, idempotency_key: str | None
    ) -> Call[AutoTopupCardSession]:
        for name, url in (("success_url", success_url), ("cancel_url", cancel_url)):
            if not isinstance(url, str) or not url:
                raise TypeError(f"{name} is an address, e.g. 'https://app.example/billing'")
        return self._write(
            "POST",
            f"{_auto_topup_path(account_id)}/card-session",
            {"success_url": success_url, "cancel_url": cancel_url},
            idempotency_key,
            lambda data, _: AutoTopupCardSession.from_json(data),
        )

    # The billing page -----------------------------------------------------------------------

    def _create_portal_session(
        self, account_id: str, return_url: str, member: str | None
    ) -> Call[PortalSession]:
        body = {"account_id": account_id, "return_url": return_url, **_present(member=member)}
        # A link changes nothing on the server: it needs no idempotency key.
        return self._write(
            "POST",
            "/v1/portal-sessions",
            body,
            None,
            lambda data, _: PortalSession.from_json(data),
            key_by_server=True,
        )

    # Webhooks ---------------------------------------------------------------------------

    def _create_webhook_endpoint(
        self,
        url: str,
        events: Iterable[str],
        *,
        description: str | None,
        idempotency_key: str | None,
    ) -> Call[WebhookEndpoint]:
        if not isinstance(url, str) or not url:
            raise TypeError("url is where to send webhooks, e.g. 'https://app.example/hooks'")
        if isinstance(events, str):
            raise TypeError("events is a list of event types, not one string")
        body: dict[str, Any] = {"url": url, "events": list(events)}
        body.update(_present(description=description))
        return self._write(
            "POST",
            "/v1/webhook-endpoints",
            body,
            idempotency_key,
            lambda data, _: WebhookEndpoint.from_json(data),
        )

    def _list_webhook_endpoints(self) -> Call[list[WebhookEndpoint]]:
        return Call(
            "GET",
            "/v1/webhook-endpoints",
            lambda data, _: [WebhookEndpoint.from_json(item) for item in data["data"]],
        )

    def _disable_webhook_endpoint(self, endpoint_id: str) -> Call[WebhookEndpoint]:
        return self._write(
            "DELETE",
            f"/v1/webhook-endpoints/{_segment(endpoint_id)}",
            None,
            None,
            lambda data, _: WebhookEndpoint.from_json(data),
        )

    def _list_webhook_deliveries(
        self, *, destination: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Call[WebhookDeliveryPage]:
        params: dict[str, str | int] = {"limit": limit}
        for name, value in (("destination", destination), ("status", status), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        return Call(
            "GET",
            "/v1/webhook-deliveries",
            lambda data, _: WebhookDeliveryPage.from_json(data),
            params=params,
        )

    def _retry_webhook_delivery(self, delivery_id: int) -> Call[WebhookDelivery]:
        if isinstance(delivery_id, bool) or not isinstance(delivery_id, int):
            raise TypeError(f"delivery_id is a delivery's whole-number id, not {delivery_id!r}")
        return self._write(
            "POST",
            f"/v1/webhook-deliveries/{delivery_id}/retry",
            None,
            None,
            lambda data, _: WebhookDelivery.from_json(data),
        )

    def _list_audit_records(
        self,
        *,
        target: str | None,
        actor: str | None,
        action: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> Call[AuditRecordPage]:
        params: dict[str, str | int] = {"limit": limit}
        for name, value in (("target", target), ("actor", actor), ("action", action)):
            if value is not None:
                params[name] = value
        for name, moment in (("since", since), ("until", until)):
            if moment is not None:
                params[name] = instant_of(moment, name)
        if cursor is not None:
            params["cursor"] = cursor
        return Call(
            "GET", "/v1/audit-log", lambda data, _: AuditRecordPage.from_json(data), params=params
        )

    # Sending: what the sync and async loops share ----------------------------------------

    def _write(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        idempotency_key: str | None,
        read: Callable[[Any, bool], T],
        *,
        key_by_server: bool = False,
    ) -> Call[T]:
        headers: dict[str, str] = {}
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not idempotency_key:
                raise TypeError("idempotency_key is a non-empty string")
            headers["Idempotency-Key"] = idempotency_key
        elif not key_by_server:
            headers["Idempotency-Key"] = new_idempotency_key()
        content = None
        if body is not None:
            content = _json.dumps(body)
            headers["Content-Type"] = "application/json"
        return Call(method, path, read, body=content, headers=headers)

    def _retries(self, call: Call[Any]) -> int:
        """How many times ``call`` may be tried again."""
        return 0 if call.once else self.max_retries

    def _retry_delay(self, call: Call[Any], response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again after ``response``, or None to answer it."""
        status = response.status_code
        if attempt >= self._retries(call) or not (status == 429 or status >= 500):
            return None
        asked = retry_after(response.headers)
        if asked is not None:
            return asked if asked <= MAX_RETRY_AFTER else None
        return self._backoff(attempt)

    def _retry_delay_after(self, exc: httpx.TransportError, call: Call[Any], attempt: int) -> float:
        """Seconds to wait before trying again after a network failure; raises when done."""
        if attempt < self._retries(call) and isinstance(exc, _RETRYABLE):
            return self._backoff(attempt)
        tries = attempt + 1
        error = TransportError(
            f"{call.method} {self.base_url}{call.path}: no answer after {tries} "
            f"attempt{'s' if tries > 1 else ''} ({type(exc).__name__}: {exc})",
            attempts=tries,
        )
        error.idempotency_key = call.headers.get("Idempotency-Key")
        raise error from exc

    def _backoff(self, attempt: int) -> float:
        # Exponential, with jitter so that clients failed by one outage do not return in step.
        ceiling = min(self.backoff * 2.0**attempt, MAX_BACKOFF)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - timing jitter, not a secret

    def _answer(self, call: Call[T], response: httpx.Response) -> T:
        """The typed result of a success, or the exception an error answer stands for."""
        if not response.is_success:
            try:
                payload = _json.loads(response.content)
            except ValueError:
                payload = None
            error = error_for(
                response.status_code,
                payload,
                reason=response.reason_phrase,
                retry_after=retry_after(response.headers),
            )
            error.idempotency_key = call.headers.get("Idempotency-Key")
            raise error
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        try:
            return call.read(_json.loads(response.content), replayed)
        except (ValueError, KeyError, TypeError) as exc:
            raise APIError(
                f"the answer to {call.method} {call.path} is not what this SDK expects: {exc!r}",
                status=response.status_code,
                code="invalid_response",
            ) from exc


def amount_of(value: object, name: str = "amount") -> Decimal:
    """Credits from a caller as an exact Decimal; a float is refused (0.1 is not 0.1)."""
    if isinstance(value, float):
        raise TypeError(
            f"{name} is a float ({value!r}), which cannot hold most decimals exactly; "
            f"pass a Decimal, an int or a str such as '{value}'"
        )
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise TypeError(f"{name} is a Decimal, an int or a str, not {type(value).__name__}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def instant_of(value: object, name: str) -> str:
    """A moment from a caller as RFC 3339 with its offset; a naive datetime is refused."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} is a datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware, e.g. datetime(2027, 1, 1, tzinfo=timezone.utc)"
        )
    return value.isoformat()


def seconds_of(value: object) -> int:
    """A lifetime in whole seconds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expires_in is a whole number of seconds, not {value!r}")
    return value


def priced(
    amount: Amount | None, feature: str | None, quantity: Amount | None, usage: Usage | None
) -> dict[str, Any]:
    """What a charge, hold, capture or quote costs: exactly one of amount, feature or usage."""
    given = [
        name
        for name, value in (("amount", amount), ("feature", feature), ("usage", usage))
        if value is not None
    ]
    if len(given) != 1:
        raise TypeError(
            "give exactly one of amount, feature or usage"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if quantity is not None and feature is None:
        raise TypeError("quantity goes with feature")
    if amount is not None:
        return {"amount": amount_of(amount)}
    if feature is not None:
        if not isinstance(feature, str):
            raise TypeError("feature is the name of a priced feature, e.g. 'chat_message'")
        body: dict[str, Any] = {"feature": feature}
        if quantity is not None:
            body["quantity"] = amount_of(quantity, "quantity")
        return body
    if not isinstance(usage, Mapping):
        raise TypeError("usage is a dict: {'model': ..., 'input_tokens': ..., ...}")
    return {"usage": dict(usage)}


def limits_of(limits: Iterable[Limit]) -> list[dict[str, Any]]:
    """A subject's whole set of spend limits as the server takes them, amounts exact."""
    if isinstance(limits, Limit | str | Mapping):
        raise TypeError("limits is a list of Limit, e.g. [Limit(1000, 'day')]")
    body = []
    for limit in limits:
        if not isinstance(limit, Limit):
            raise TypeError(f"each limit is a Limit, e.g. Limit(1000, 'day'), not {limit!r}")
        amount = amount_of(limit.amount, "a limit's amount")
        body.append({"amount": amount, "period": limit.period, "mode": limit.mode})
    return body


def retry_after(headers: httpx.Headers) -> float | None:
    """The Retry-After header in seconds (given as seconds or as an HTTP date), if any."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _present(**fields: object) -> dict[str, object]:
    return {name: value for name, value in fields.items() if value is not None}


def _page(limit: int, cursor: str | None) -> dict[str, str | int]:
    return {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}


def _segment(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected an id, got {value!r}")
    return quote(value, safe="")


def _account_path(account_id: str) -> str:
    return f"/v1/accounts/{_segment(account_id)}"


def _auto_topup_path(account_id: str) -> str:
    return f"{_account_path(account_id)}/auto-topup"


def _member_path(account_id: str, member_id: str) -> str:
    return f"{_account_path(account_id)}/members/{_segment(member_id)}"


def _hold_path(hold_id: str) -> str:
    return f"/v1/holds/{_segment(hold_id)}"


def _read_transfer(data: Any, replayed: bool) -> Transfer:
    return Transfer.from_json(data, replayed=replayed)


def _read_hold(data: Any, replayed: bool) -> Hold:
    return Hold.from_json(data, replayed=replayed)


def _read_auto_topup(data: Any, _replayed: bool) -> AutoTopup:
    return AutoTopup.from_json(data)


def _read_verification(data: Any, _replayed: bool) -> Verification:
    return Verification.from_json(data)


def _read_limits(data: Any, _replayed: bool) -> list[LimitState]:
    return [LimitState.from_json(item) for item in data["data"]]
