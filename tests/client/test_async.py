"""AsyncClient against the real app in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from creditsd.api.app import create_app
from creditsd.client import (
    AccountNotActiveError,
    AsyncClient,
    AuthenticationError,
    ConflictError,
    IdempotencyConflictError,
    InsufficientCreditsError,
    Limit,
    LimitReachedError,
    NotFoundError,
    PaymentProviderError,
    PermissionDeniedError,
    ServerError,
    SpendRefusedError,
    TransportError,
    ValidationError,
)
from creditsd.inprocess import Ledger
from tests.client.conftest import BASE_URL, Connect
from tests.conftest import Clock, LedgerFactory, body, create_key

D = Decimal
CREDIT = 10_000
"""Minor units in one credit: the in-process ledger counts in them."""


class LosesAnswers(httpx.AsyncBaseTransport):
    """Delivers each request to the app, then loses the answer of the first ``drops``.

    That is what a connection dropped after the server committed looks like to a client:
    the write happened, but all it sees is a protocol error.
    """

    def __init__(self, app: FastAPI, drops: int = 0) -> None:
        self.app = httpx.ASGITransport(app=app)
        self.drops = drops
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.app.handle_async_request(request)
        await response.aread()
        if self.drops > 0:
            self.drops -= 1
            await response.aclose()
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return response

    def keys(self) -> list[str]:
        """The Idempotency-Key of every request seen."""
        return [request.headers["Idempotency-Key"] for request in self.requests]


async def test_two_apps_spend_one_balance(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    chat = connect(await create_key(ledger, "app", "chat"))
    canvas = connect(await create_key(ledger, "app", "canvas"), app="canvas-web/2.1")

    welcome = await billing.grant("user_2abc", 100, reason="welcome")
    assert (welcome.kind, welcome.amount, welcome.balance) == ("grant", D(100), D(100))

    message = await chat.charge("user_2abc", 10, description="chat_message")
    image = await canvas.deduct("user_2abc", "50", description="image")
    assert (message.app, message.change, message.balance) == ("chat", D(-10), D(90))
    assert (image.app, image.change, image.balance, image.available) == (
        "canvas",
        D(-50),
        D(40),
        D(40),
    )
    assert await chat.get_balance("user_2abc") == Decimal(40)
    assert await canvas.get_balance("user_2abc") == Decimal(40)

    with pytest.raises(InsufficientCreditsError) as refused:
        await chat.charge("user_2abc", "40.0001")
    assert (refused.value.status, refused.value.code) == (402, "insufficient_credits")
    assert (refused.value.required, refused.value.available) == (Decimal("40.0001"), D(40))
    assert refused.value.account_id == "user_2abc"
    assert await canvas.get_balance("user_2abc") == 40

    newest = await chat.get_transactions("user_2abc", limit=2)
    assert [(t.kind, t.app, t.change) for t in newest.data] == [
        ("charge", "canvas", D(-50)),
        ("charge", "chat", D(-10)),
    ]
    assert newest.next_cursor is not None
    oldest = await chat.get_transactions("user_2abc", limit=2, cursor=newest.next_cursor)
    assert [(t.kind, t.change) for t in oldest.data] == [("grant", D(100))]
    assert oldest.next_cursor is None
    walked = [t.id async for t in canvas.iter_transactions("user_2abc", page_size=1)]
    assert walked == [image.id, message.id, welcome.id]

    found = await canvas.get_transaction(message.id)
    assert (found.description, found.app, found.amount) == ("chat_message", "chat", D(10))
    assert isinstance(found.created_at, datetime) and found.created_at.tzinfo is not None

    verified = await chat.verify_balance("user_2abc")
    assert (verified.valid, verified.stored, verified.calculated) == (True, D(40), D(40))
    assert (await billing.rebuild_balance("user_2abc")).valid
    account = await billing.get_account("user_2abc")
    assert (account.balance, account.held, account.available) == (D(40), D(0), D(40))


async def test_initialize_account_applies_settings_once(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    opened = await billing.initialize_account(
        "org:acme",
        initial_grant=25,
        overdraft_limit="5.5",
        aliases=["123"],
        metadata={"plan": "team", "seats": Decimal("2.5")},
    )
    assert (opened.id, opened.balance, opened.available) == ("org:acme", D(25), Decimal("30.5"))
    assert opened.aliases == ("123",)
    assert opened.metadata == {"plan": "team", "seats": Decimal("2.5")}
    again = await billing.initialize_account("org:acme", initial_grant=25)
    assert again.balance == 25  # the initial grant is paid only on creation
    assert (await billing.get_account("123")).id == "org:acme"


async def test_amounts_round_trip_exactly(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    tiny = await billing.grant("u", Decimal("0.0001"))
    assert (tiny.amount, tiny.balance) == (Decimal("0.0001"), Decimal("0.0001"))
    await billing.grant("u", "123456789.1233")
    first = await billing.charge("u", Decimal("0.1"))
    second = await billing.charge("u", "0.2")
    assert first.change + second.change == Decimal("-0.3")  # 0.1 + 0.2 is 0.3 here
    assert second.balance == Decimal("123456788.8234")
    assert str(await billing.get_balance("u")) == "123456788.8234"


async def test_a_hold_reserves_an_estimate_and_settles_the_actual_cost(
    ledger: Ledger, connect: Connect
) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    worker = connect(await create_key(ledger, "app", "render"))
    await billing.grant("u", 100)

    hold = await worker.hold("u", 50, expires_in=600, description="render job")
    assert (hold.status, hold.amount, hold.held) == ("open", D(50), D(50))
    assert await worker.get_balance("u") == 50
    extended = await worker.extend(hold.id, 1800)
    assert extended.expires_at > hold.expires_at

    settled = await worker.capture(hold.id, 30)
    assert (settled.hold.status, settled.hold.captured, settled.hold.held) == (
        "captured",
        D(30),
        D(0),
    )
    assert (settled.transfer.kind, settled.transfer.amount) == ("capture", D(30))
    assert (settled.transfer.hold_id, settled.transfer.balance) == (hold.id, D(70))
    assert await worker.get_balance("u") == 70
    # The job runs its settlement twice: the hold-keyed final capture answers the first.
    repeated = await worker.capture(hold.id, 30)
    assert repeated.transfer.id == settled.transfer.id
    assert repeated.transfer.replayed

    sliced = await worker.hold("u", 20)
    part = await worker.capture(sliced.id, 5, final=False)
    assert (part.hold.status, part.hold.held) == ("open", D(15))
    released = await worker.release(sliced.id)
    assert (released.status, released.captured, released.held) == ("released", D(5), D(0))
    assert (await worker.release(sliced.id)).status == "released"  # twice is harmless
    assert (await worker.get_hold(sliced.id)).status == "released"
    assert await worker.get_balance("u") == 65

    with pytest.raises(ConflictError) as closed:
        await worker.release(hold.id)
    assert (closed.value.status, closed.value.code) == (409, "hold_not_open")
    assert not isinstance(closed.value, IdempotencyConflictError)
    assert (await worker.verify_balance("u")).valid


async def test_errors_arrive_as_their_exception_classes(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    chat = connect(await create_key(ledger, "app", "chat"))
    reader = connect(await create_key(ledger, "read", "dashboard"))
    stranger = connect("cdk_not_a_key")
    await billing.grant("u", 10)

    with pytest.raises(NotFoundError) as missing:
        await chat.get_hold("hold_nope")
    assert (missing.value.status, missing.value.code) == (404, "hold_not_found")
    assert missing.value.details == {"hold_id": "hold_nope"}
    with pytest.raises(NotFoundError):
        await chat.get_transaction("tr_nope")
    with pytest.raises(AuthenticationError) as unknown:
        await stranger.get_balance("u")
    assert (unknown.value.status, unknown.value.code) == (401, "unauthenticated")
    with pytest.raises(PermissionDeniedError) as not_admin:
        await chat.grant("u", 5)
    assert not_admin.value.status == 403
    with pytest.raises(PermissionDeniedError):
        await reader.charge("u", 1)

    await chat.charge("u", 1, idempotency_key="msg-1")
    assert (await chat.charge("u", 1, idempotency_key="msg-1")).replayed
    with pytest.raises(IdempotencyConflictError) as reused:
        await chat.charge("u", 2, idempotency_key="msg-1")
    assert (reused.value.status, reused.value.code) == (409, "idempotency_conflict")
    assert reused.value.idempotency_key == "msg-1"

    with pytest.raises(ValidationError) as too_precise:
        await chat.charge("u", "0.00001")
    assert (too_precise.value.status, too_precise.value.code) == (422, "invalid_amount")
    with pytest.raises(ValidationError) as bad_lifetime:
        await chat.hold("u", 1, expires_in=0)
    assert (bad_lifetime.value.status, bad_lifetime.value.code) == (422, "validation_error")
    assert bad_lifetime.value.details["problems"][0]["field"] == "body.expires_in"

    assert await reader.get_balance("u") == 9  # only the first msg-1 moved credits


async def test_a_lost_answer_is_retried_with_the_same_key_and_moves_credits_once(
    ledger: Ledger, app: FastAPI, connect: Connect
) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    await billing.grant("u", 100)
    network = LosesAnswers(app, drops=1)
    chat = connect(await create_key(ledger, "app", "chat"), transport=network)

    charged = await chat.charge("u", 10)
    assert len(network.requests) == 2
    first_key, retry_key = network.keys()
    assert first_key == retry_key == charged.idempotency_key
    assert first_key.startswith("sdk_")
    assert charged.replayed  # the server answered the retry from its record
    assert charged.balance == 90

    network.drops = 1
    hold = await chat.hold("u", 50)
    assert hold.replayed
    network.drops = 1
    settled = await chat.capture(hold.id, 20)  # keyed by the hold on the server
    assert settled.transfer.replayed

    history = [(t.kind, t.amount) async for t in billing.iter_transactions("u")]
    assert history == [("capture", D(20)), ("charge", D(10)), ("grant", D(100))]
    account = await billing.get_account("u")
    assert (account.balance, account.held) == (D(70), D(0))
    assert (await billing.verify_balance("u")).valid


async def test_when_every_answer_is_lost_the_key_lets_the_caller_retry_later(
    ledger: Ledger, app: FastAPI, connect: Connect
) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    await billing.grant("u", 100)
    network = LosesAnswers(app, drops=3)
    chat = connect(await create_key(ledger, "app", "chat"), transport=network, max_retries=2)

    with pytest.raises(TransportError) as lost:
        await chat.charge("u", 10)
    assert lost.value.attempts == 3
    assert isinstance(lost.value.__cause__, httpx.RemoteProtocolError)
    assert lost.value.idempotency_key is not None
    assert set(network.keys()) == {lost.value.idempotency_key}

    later = await chat.charge("u", 10, idempotency_key=lost.value.idempotency_key)
    assert later.replayed
    assert await billing.get_balance("u") == 90


async def test_priced_writes_carry_their_breakdown(ledger: Ledger, connect: Connect) -> None:
    credits = connect(await create_key(ledger, "admin", "studio"))
    await credits.grant("u", 500)
    video = await credits.charge("u", feature="video_generation", quantity=30)
    assert (video.amount, video.balance) == (D(300), D(200))
    assert video.pricing is not None
    assert (video.pricing["catalog_version"], video.pricing["kind"]) == (1, "meter")
    quote = await credits.quote(usage={"model": "openai/gpt-4o", "input_tokens": 1000})
    assert quote.amount == D("0.25")  # 1000 × 2.50 USD / 10^6 × 100 credits/USD
    hold = await credits.hold("u", feature="canvas_generation_simple")
    assert (hold.amount, hold.pricing is not None) == (D(50), True)
    settled = await credits.capture(hold.id, feature="video_generation", quantity=3)
    assert settled.transfer.amount == D(30)
    assert settled.transfer.pricing is not None
    assert settled.transfer.pricing["settlement"]["released"] == D(20)
    assert (await credits.get_transaction(video.id)).pricing == video.pricing


async def test_grants_fill_lots_that_charges_spend_cheapest_first(
    ledger: Ledger, connect: Connect, clock: Clock
) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    chat = connect(await create_key(ledger, "app", "chat"))
    bought = await ledger.grant("u", 100 * CREDIT, source="purchase")  # as a Stripe payment
    week = (clock.now + timedelta(days=7)).replace(microsecond=0)
    promo = await billing.grant("u", 30, expires_at=week, reason="launch week")
    (promo_lot,) = promo.lots
    assert (promo_lot.source, promo_lot.amount, promo_lot.expires_at) == ("promotion", D(30), week)
    assert (promo.paid, promo.free) == (D(0), D(30))
    fix = await billing.grant("u", "5.5", source="adjustment", priority=0, reason="outage")
    (fix_lot,) = fix.lots
    assert (fix_lot.source, fix_lot.amount, fix_lot.expires_at) == ("adjustment", D("5.5"), None)

    account = await chat.get_account("u")
    assert account.status == "active"
    assert account.balance_by_source == {
        "purchase": D(100),
        "promotion": D(30),
        "adjustment": D("5.5"),
    }
    assert sum(account.balance_by_source.values()) == account.balance == D("135.5")

    # Priority 0 first, then the promotion (10), then purchased credit (50).
    first = await chat.charge("u", 5)
    assert [(part.lot_id, part.amount) for part in first.lots] == [(fix_lot.lot_id, D(5))]
    assert (first.paid, first.free) == (D(0), D(5))
    spent = await chat.charge("u", 35)
    assert {part.lot_id: (part.source, part.amount) for part in spent.lots} == {
        fix_lot.lot_id: ("adjustment", D("0.5")),
        promo_lot.lot_id: ("promotion", D(30)),
        bought.lots[0].lot_id: ("purchase", D("4.5")),
    }
    assert (spent.paid, spent.free) == (D("4.5"), D("30.5"))
    assert all(type(part.amount) is Decimal for part in spent.lots)
    assert (await chat.get_transaction(spent.id)).lots == spent.lots
    assert (await chat.get_account("u")).balance_by_source == {"purchase": D("95.5")}
    assert (await chat.verify_balance("u")).valid


async def test_an_overdrawn_balance_splits_into_its_debt(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    await billing.initialize_account("u", initial_grant=10, overdraft_limit=5)
    spent = await billing.charge("u", 12)
    assert (spent.balance, spent.free, spent.paid) == (D(-2), D(10), D(0))
    account = await billing.get_account("u")
    assert account.balance_by_source == {"overdrawn": D(-2)}
    assert sum(account.balance_by_source.values()) == account.balance


async def test_grant_options_the_server_refuses(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    with pytest.raises(ValidationError) as past:
        await billing.grant("u", 5, expires_at=ledger.now() - timedelta(seconds=1))
    assert (past.value.status, past.value.details.get("field")) == (422, "expires_at")
    with pytest.raises(ValidationError) as bought:
        await billing.grant("u", 5, source="purchase")  # only Stripe sells credits
    assert bought.value.status == 422
    with pytest.raises(ValidationError):
        await billing.grant("u", 5, priority=1001)
    assert (await billing.get_transactions("u")).data == ()


async def test_a_frozen_or_closed_account_spends_nothing(ledger: Ledger, connect: Connect) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    chat = connect(await create_key(ledger, "app", "chat"))
    await billing.grant("u", 10)
    for status in ("frozen", "closed"):
        await ledger.open_account("u", status=status)  # as an operator does
        assert (await chat.get_account("u")).status == status
        with pytest.raises(AccountNotActiveError) as refused:
            await chat.charge("u", 1)
        assert (refused.value.status, refused.value.code) == (409, f"account_{status}")
        assert refused.value.account_id == "u"
    assert await chat.get_balance("u") == 10


async def test_packs_on_sale_and_checkout_without_stripe(make_ledger: LedgerFactory) -> None:
    shop = await make_ledger(
        packs={
            "starter": {"credits": 1_000, "price_id": "price_1k", "label": "Starter"},
            "team": {"credits": "10000.5", "price_id": "price_10k", "display_price": "$90"},
        }
    )
    transport = httpx.ASGITransport(app=create_app(shop, sweep=False))
    reader = AsyncClient(BASE_URL, await create_key(shop, "read", "site"), transport=transport)
    web = AsyncClient(
        BASE_URL, await create_key(shop, "app", "web"), transport=transport, max_retries=0
    )
    async with reader, web:
        packs = await reader.list_packs()
        assert [(p.name, p.credits, p.label, p.display_price) for p in packs] == [
            ("starter", D(1_000), "Starter", None),
            ("team", D("10000.5"), None, "$90"),
        ]
        with pytest.raises(ValidationError) as unknown:
            await web.create_checkout_session(
                "u", "huge", success_url="https://app.test/ok", cancel_url="https://app.test/no"
            )
        assert (unknown.value.status, unknown.value.code) == (422, "unknown_pack")
        assert unknown.value.details == {"pack": "huge", "known": ["starter", "team"]}
        # No [stripe] secret key: 503, a plain server error, not the payment provider's.
        with pytest.raises(ServerError) as unconfigured:
            await web.create_checkout_session(
                "u", "team", success_url="https://app.test/ok", ui_mode="embedded"
            )
        assert (unconfigured.value.status, unconfigured.value.code) == (
            503,
            "stripe_not_configured",
        )
        assert not isinstance(unconfigured.value, PaymentProviderError)


async def test_an_admin_freezes_reopens_and_sets_a_low_balance_threshold(
    ledger: Ledger, connect: Connect
) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    chat = connect(await create_key(ledger, "app", "chat"))
    opened = await billing.initialize_account("u", initial_grant=10)
    assert opened.low_balance_threshold is None  # the deployment's default
    with pytest.raises(PermissionDeniedError):
        await chat.initialize_account("u", status="frozen")

    frozen = await billing.initialize_account("u", status="frozen")
    assert (frozen.status, frozen.frozen_by) == ("frozen", ("operator",))
    with pytest.raises(AccountNotActiveError):
        await chat.charge("u", 1)
    reopened = await billing.initialize_account("u", status="active")
    assert (reopened.status, reopened.frozen_by) == ("active", ())
    assert (await chat.charge("u", 1)).balance == D(9)
    with pytest.raises(ValidationError):
        await billing.initialize_account("u", status="paused")

    own = await billing.initialize_account("u", low_balance_threshold="2.5")
    assert (own.low_balance_threshold, own.status) == (D("2.5"), "active")
    assert (await chat.get_account("u")).low_balance_threshold == D("2.5")
    never = await billing.initialize_account("u", low_balance_threshold=0)
    assert never.low_balance_threshold == D(0)
    with pytest.raises(ValidationError):
        await billing.initialize_account("u", low_balance_threshold="0.00001")


async def test_webhook_endpoints_and_their_deliveries(ledger: Ledger, connect: Connect) -> None:
    ops = connect(await create_key(ledger, "admin", "ops"))
    chat = connect(await create_key(ledger, "app", "chat"))
    with pytest.raises(PermissionDeniedError):
        await chat.create_webhook_endpoint("https://app.example/hooks", ["balance.low"])
    with pytest.raises(PermissionDeniedError):
        await chat.list_webhook_deliveries()
    with pytest.raises(ValidationError):
        await ops.create_webhook_endpoint("ftp://app.example", ["balance.low"])
    with pytest.raises(ValidationError):
        await ops.create_webhook_endpoint("https://app.example/hooks", ["balance.high"])

    created = await ops.create_webhook_endpoint(
        "https://app.example/hooks", ["charge.succeeded", "balance.low"], description="billing"
    )
    assert created.id.startswith("we_") and created.secret.startswith("whsec_")
    assert (created.events, created.description, created.disabled_at) == (
        ("balance.low", "charge.succeeded"),
        "billing",
        None,
    )
    (listed,) = await ops.list_webhook_endpoints()
    assert (listed.id, listed.url, listed.events) == (created.id, created.url, created.events)
    assert listed.secret != created.secret  # masked: shown whole only at creation
    assert created.secret not in repr(listed.raw)

    account = await ops.initialize_account("u", initial_grant=100, low_balance_threshold=50)
    assert account.low_balance_threshold == D(50)
    await chat.charge("u", 30)
    below = await chat.charge("u", 30)  # 70 → 40: below 50

    walked = [d async for d in ops.iter_webhook_deliveries(page_size=1)]
    assert [d.event_type for d in walked] == ["balance.low", "charge.succeeded", "charge.succeeded"]
    assert {(d.destination, d.status, d.attempts, d.account_id) for d in walked} == {
        (created.id, "pending", 0, "u")
    }
    low = walked[0]
    assert low.payload["data"]["threshold"] == D(50)
    assert low.payload["data"]["transfer_id"] == below.id
    assert walked[1].payload["data"]["transfer"]["id"] == below.id
    assert (low.delivered_at, low.last_error) == (None, None)
    first = await ops.list_webhook_deliveries(destination=created.id, status="pending", limit=2)
    assert [d.id for d in first.data] == [d.id for d in walked[:2]]
    assert first.next_cursor is not None
    rest = await ops.list_webhook_deliveries(status="pending", cursor=first.next_cursor)
    assert ([d.id for d in rest.data], rest.next_cursor) == ([walked[2].id], None)
    assert (await ops.list_webhook_deliveries(status="dead")).data == ()
    assert (await ops.list_webhook_deliveries(destination="gateway")).data == ()

    retried = await ops.retry_webhook_delivery(low.id)
    assert (retried.id, retried.status, retried.message_id) == (low.id, "pending", low.message_id)
    with pytest.raises(NotFoundError) as no_delivery:
        await ops.retry_webhook_delivery(999_999)
    assert no_delivery.value.code == "delivery_not_found"
    with pytest.raises(NotFoundError) as no_endpoint:
        await ops.disable_webhook_endpoint("we_nope")
    assert no_endpoint.value.code == "endpoint_not_found"

    disabled = await ops.disable_webhook_endpoint(created.id)
    assert disabled.disabled_at is not None
    assert (await ops.disable_webhook_endpoint(created.id)).disabled_at == disabled.disabled_at
    assert [e.disabled_at for e in await ops.list_webhook_endpoints()] == [disabled.disabled_at]
    await chat.charge("u", 1)
    assert len((await ops.list_webhook_deliveries()).data) == 3  # no longer sent to


async def test_the_audit_log_page_by_page(ledger: Ledger, connect: Connect, clock: Clock) -> None:
    ops = connect(await create_key(ledger, "admin", "ops"))
    chat = connect(await create_key(ledger, "app", "chat"))
    with pytest.raises(PermissionDeniedError):
        await chat.list_audit_records()
    start = clock.now
    clock.advance(60)
    await ops.grant("u", 10, reason="welcome")
    await ops.initialize_account("u", status="frozen")
    await ops.grant("v", 5, reason="promo")

    walked = [r async for r in ops.iter_audit_records(page_size=2)]
    assert [(r.action, r.target) for r in walked[:3]] == [
        ("grant", "v"),
        ("account.frozen", "u"),
        ("grant", "u"),
    ]
    assert [r.action for r in walked[3:]] == ["key.create", "key.create"]
    assert walked[2].after is not None
    assert walked[2].after["balance"] == 10  # in credits, as the API shows amounts
    assert walked[2].actor.endswith(":ops")
    first = await ops.list_audit_records(target="u", limit=1)
    assert [r.action for r in first.data] == ["account.frozen"]
    rest = await ops.list_audit_records(target="u", cursor=first.next_cursor)
    assert ([r.action for r in rest.data], rest.next_cursor) == (["grant"], None)
    later = [
        r.target
        async for r in ops.iter_audit_records(action="grant", since=start + timedelta(seconds=1))
    ]
    assert later == ["v", "u"]
    with pytest.raises(ValidationError) as garbage:
        await ops.list_audit_records(cursor="not-a-cursor")
    assert garbage.value.code == "invalid_cursor"


async def test_a_portal_link_opens_the_account_s_billing_page(
    ledger: Ledger, connect: Connect, app: FastAPI
) -> None:
    chat = connect(await create_key(ledger, "app", "chat"))
    await ledger.grant("u", 25 * CREDIT)
    link = await chat.create_portal_session("u", "https://app.example/account")
    assert link.url.startswith(f"{BASE_URL}/billing/open?token=")
    assert link.expires_at - ledger.now() == timedelta(seconds=300)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as browser:
        opened = await browser.get(link.url)
        assert opened.status_code == 303
        page = await browser.get(f"{BASE_URL}/billing")
    assert 'data-testid="balance">25 <small>' in page.text
    with pytest.raises(ValidationError):
        await chat.create_portal_session("u", "javascript:alert(1)")
    reader = connect(await create_key(ledger, "read", "dash"))
    with pytest.raises(PermissionDeniedError):
        await reader.create_portal_session("u", "https://app.example/account")


async def test_a_team_wallet_s_members_spend_within_their_limits(
    ledger: Ledger, connect: Connect, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 7, 15, tzinfo=UTC)
    await ledger.grant("org:acme", 10_000 * CREDIT)
    chat = connect(await create_key(ledger, "app", "chat"))
    ada = await chat.put_member("org:acme", "ada", limits=[Limit(1000, "day")])
    assert (ada.account_id, ada.member_id, ada.display_name) == ("org:acme", "ada", None)
    (day,) = ada.limits
    assert (day.scope, day.subject, day.period, day.mode) == ("member", "ada", "day", "hard")
    assert (day.amount, day.remaining, day.resets_at) == (
        D(1000),
        D(1000),
        datetime(2026, 12, 8, tzinfo=UTC),
    )
    renamed = await chat.put_member("org:acme", "ada", display_name="Ada Lovelace")
    assert (renamed.display_name, len(renamed.limits)) == ("Ada Lovelace", 1)  # limits stay
    await chat.put_member("org:acme", "grace", display_name="Grace Hopper")

    charged = await chat.charge("org:acme", 600, member="ada", description="report")
    assert (charged.member, charged.change, charged.balance) == ("ada", D(-600), D(9400))
    assert (await chat.charge("org:acme", 1)).member is None

    with pytest.raises(LimitReachedError) as refused:
        await chat.hold("org:acme", 500, member="ada", expires_in=600)
    limit = refused.value
    assert (limit.status, limit.code) == (402, "limit_reached")
    assert (limit.limit_source, limit.period) == ("member", "day")
    assert (limit.limit, limit.remaining, limit.required) == (D(1000), D(400), D(500))
    assert limit.resets_at == datetime(2026, 12, 8, tzinfo=UTC)
    assert isinstance(limit, SpendRefusedError)
    assert not isinstance(limit, InsufficientCreditsError)  # the wallet can afford it
    hold = await chat.hold("org:acme", 400, member="ada", expires_in=600)
    assert (hold.member, hold.held) == ("ada", D(400))

    with pytest.raises(NotFoundError) as unknown:
        await chat.charge("org:acme", 1, member="ad4")
    assert unknown.value.code == "member_not_found"

    first = await chat.list_members("org:acme", limit=1)
    assert [m.member_id for m in first.data] == ["ada"]
    (spend,) = first.data[0].limits
    assert (spend.spent, spend.held, spend.remaining) == (D(600), D(400), D(0))
    assert spend.window_start == spend.since == clock.now  # no window starts before the limit
    rest = await chat.list_members("org:acme", cursor=first.next_cursor)
    assert ([m.display_name for m in rest.data], rest.next_cursor) == (["Grace Hopper"], None)

    removed = await chat.remove_member("org:acme", "grace")
    assert (removed.member_id, removed.display_name) == ("grace", "Grace Hopper")
    assert [m.member_id async for m in chat.iter_members("org:acme", page_size=1)] == ["ada"]
    with pytest.raises(NotFoundError):
        await chat.remove_member("org:acme", "grace")


async def test_wallet_app_and_proxy_key_limits_are_set_whole(
    ledger: Ledger, connect: Connect, api: httpx.AsyncClient
) -> None:
    await ledger.grant("org:acme", 10_000 * CREDIT)
    chat = connect(await create_key(ledger, "app", "chat"))
    key = body(await api.post("/v1/proxy-keys", json={"account_id": "org:acme"}))

    wallet = await chat.set_wallet_limits("org:acme", [Limit(100, "day"), Limit("2500.5", "month")])
    assert [(s.scope, s.subject, s.period, s.amount) for s in wallet] == [
        ("wallet", None, "day", D(100)),
        ("wallet", None, "month", D("2500.5")),
    ]
    apps = await chat.set_app_limits("org:acme", "chat", [Limit(50, "week", mode="soft")])
    assert ("app", "chat", "week", "soft") in [(s.scope, s.subject, s.period, s.mode) for s in apps]
    keys = await chat.set_proxy_key_limits(key["id"], [Limit(5, "lifetime")])
    (lifetime,) = [s for s in keys if s.scope == "key"]
    assert (lifetime.subject, lifetime.period, lifetime.resets_at) == (key["id"], "lifetime", None)
    assert len(await chat.list_limits("org:acme")) == 4

    with pytest.raises(LimitReachedError) as refused:
        await chat.charge("org:acme", 101)
    assert (refused.value.limit_source, refused.value.period) == ("wallet", "day")
    await chat.set_wallet_limits("org:acme", [])
    assert [s.scope for s in await chat.list_limits("org:acme")] == ["app", "key"]
    assert (await chat.charge("org:acme", 101)).amount == D(101)  # a soft limit refuses nothing

    with pytest.raises(ValidationError) as unnested:
        await chat.put_member("org:acme", "ada", limits=[Limit(10, "day"), Limit(5, "month")])
    assert unnested.value.code == "limits_not_nested"
    with pytest.raises(NotFoundError):
        await chat.set_proxy_key_limits("pxk_nope", [])


async def test_a_usage_event_names_its_member(ledger: Ledger, connect: Connect) -> None:
    await ledger.grant("org:acme", 100 * CREDIT)
    chat = connect(await create_key(ledger, "app", "chat"))
    await chat.put_member("org:acme", "ada", limits=[Limit(15, "day")])
    events = [
        {"id": f"e{n}", "account_id": "org:acme", "member": "ada", "feature": "chat_message"}
        for n in range(2)
    ]
    results = await chat.send_usage(events)
    assert [r.status for r in results] == ["charged", "limit_reached"]
    assert results[1].error is not None
    assert results[1].error["limit_source"] == "member"
    assert results[0].transfer_id is not None
    assert (await chat.get_transaction(results[0].transfer_id)).member == "ada"


async def test_a_wallet_s_limits_count_in_its_time_zone(
    ledger: Ledger, connect: Connect, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 7, 10, tzinfo=UTC)  # 19:00 in Tokyo
    chat = connect(await create_key(ledger, "app", "chat"))
    assert (await chat.initialize_account("org:acme")).time_zone == "UTC"
    tokyo = await chat.initialize_account("org:acme", time_zone="Asia/Tokyo")
    assert (tokyo.time_zone, (await chat.get_account("org:acme")).time_zone) == ("Asia/Tokyo",) * 2
    (day,) = [
        limit
        for limit in await chat.set_wallet_limits("org:acme", [Limit(5, "day")])
        if limit.period == "day"
    ]
    assert day.resets_at == datetime(2026, 12, 7, 15, tzinfo=UTC)  # midnight in Tokyo
    with pytest.raises(ValidationError) as refused:
        await chat.initialize_account("org:acme", time_zone="Mars/Olympus_Mons")
    assert refused.value.code == "invalid_request"
    assert (await chat.initialize_account("org:acme", time_zone="UTC")).time_zone == "UTC"
    with pytest.raises(TypeError):
        await chat.initialize_account("org:acme", time_zone=9)  # type: ignore[arg-type]


async def test_the_runway_tells_how_long_the_credits_last(
    ledger: Ledger, connect: Connect, clock: Clock
) -> None:
    billing = connect(await create_key(ledger, "admin", "billing"))
    await billing.grant("u", 100)
    assert (await billing.get_runway("u")).reason == "too_little_history"
    await billing.charge("u", 10)
    clock.advance(86_400)
    runway = await billing.get_runway("u")
    assert (runway.available, runway.burn_per_day, runway.runway_days) == (D(90), D(10), D(9))
    assert runway.runs_out_at == clock.now + timedelta(days=9)
    assert runway.reason is None
