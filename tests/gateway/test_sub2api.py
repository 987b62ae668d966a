"""Usage posts exactly as sub2api writes them today: Go's ``encoding/json`` (fields tagged
``omitempty`` absent when zero, small floats in exponent form, ``userId`` an int64), a
``requestId`` per event that its retries repeat, and its reading of our answer (200 only,
a JSON object whose ``success`` is a bool and ``timestamp`` a string)."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime
from decimal import Decimal

import httpx

from creditsd.inprocess import Ledger
from tests.conftest import body

USAGE = "/api/internal/webhooks/usage"
HEADERS = {"Content-Type": "application/json"}


def go_usage(request_id: str | None, cost: str, *, user: int = 123, extra: str = "") -> bytes:
    """A usage body byte for byte as sub2api's struct marshals: no apiKey (empty), no cache
    counts (zero), no sub2api_balance_usd (not preloaded); ``cost`` as Go writes the float."""
    rid = f'"requestId":"{request_id}",' if request_id is not None else ""
    return (
        f'{{{rid}"event":"usage","userId":{user},"model":"gpt-4o-mini","inputTokens":100,'
        f'"outputTokens":20,"cost":{cost},"totalCost":{cost},"rateMultiplier":1,'
        f'"timestamp":1764547200000{extra}}}'
    ).encode()


def as_sub2api_reads_it(response: httpx.Response) -> None:
    """What sub2api's client accepts: status 200 exactly, and a body its response struct
    unmarshals (``success`` a bool, ``timestamp`` a string, balances numbers)."""
    assert response.status_code == 200, response.text
    answer = body(response)
    assert answer["success"] is True
    assert isinstance(answer["timestamp"], str) and datetime.fromisoformat(answer["timestamp"])
    for figure in ("balance", "balance_usd"):
        assert answer.get(figure) is None or isinstance(answer[figure], Decimal)


async def test_a_current_sub2api_event_is_charged_once_by_its_request_id(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    request_id = str(uuid.uuid4())
    sent = go_usage(request_id, "0.003")
    first = await gateway.post(USAGE, content=sent, headers=HEADERS)
    as_sub2api_reads_it(first)
    assert body(first)["status"] == "charged"
    # sub2api's retries send the very same bytes; a later event differs only by its id.
    retried = await gateway.post(USAGE, content=sent, headers=HEADERS)
    as_sub2api_reads_it(retried)
    assert (body(retried)["status"], body(retried)["transfer_id"]) == (
        "duplicate",
        body(first)["transfer_id"],
    )
    later = await gateway.post(USAGE, content=go_usage(str(uuid.uuid4()), "0.003"), headers=HEADERS)
    assert body(later)["status"] == "charged"
    assert (await linked.get_account("123")).balance == -2 * 3_000  # 0.3 credits each


async def test_fields_sub2api_adds_later_are_kept_with_the_charge(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    extra = ',"groupId":7,"tier":"pro","apiKey":"sk-hidden"'
    sent = go_usage(str(uuid.uuid4()), "0.003", extra=extra)
    answer = await gateway.post(USAGE, content=sent, headers=HEADERS)
    as_sub2api_reads_it(answer)
    charge = await linked.get_transfer(body(answer)["transfer_id"])
    assert charge.pricing is not None
    assert (charge.pricing["groupId"], charge.pricing["tier"]) == (7, "pro")
    assert "sk-hidden" not in str(charge.pricing)  # a key is never kept


async def test_an_event_without_a_request_id_is_still_charged_once(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    sent = go_usage(None, "0.003")
    first = body(await gateway.post(USAGE, content=sent, headers=HEADERS))
    again = body(await gateway.post(USAGE, content=sent, headers=HEADERS))
    assert (first["status"], again["status"]) == ("charged", "duplicate")


async def test_a_cheap_call_is_answered_and_its_fraction_carried_not_lost(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    """gpt-4o-mini at 100 + 20 tokens costs about $0.000027: 0.0027 credits, 27 minor
    units at scale 4; below a minor unit each, the fractions add up instead of vanishing."""
    sent = go_usage(str(uuid.uuid4()), "2.7e-5")
    answer = await gateway.post(USAGE, content=sent, headers=HEADERS)
    as_sub2api_reads_it(answer)
    assert (await linked.get_account("123")).balance == -27
    tiny = [go_usage(str(uuid.uuid4()), "7.5e-7", user=9) for _ in range(4)]
    for sent in tiny:  # 0.75 of a minor unit each
        as_sub2api_reads_it(await gateway.post(USAGE, content=sent, headers=HEADERS))
    assert (await linked.get_account("9")).balance == -3  # 3.0 of 4 × 0.75 charged so far


# The figure is 10,000 events ($0.0075, 7,500 minor units): run it with
# CREDITSD_TEST_GATEWAY_EVENTS=10000 (minutes); the suite sends 400 (300 minor units).
EVENTS = int(os.environ.get("CREDITSD_TEST_GATEWAY_EVENTS", "400"))


async def test_many_tiny_events_charge_their_exact_total(
    linked: Ledger, gateway: httpx.AsyncClient
) -> None:
    """N events of $0.00000075 are N × 0.75 minor units at 100 credits a dollar (scale 4),
    charged to within one minor unit and never a 5xx."""
    statuses: list[int] = []

    async def post(n: int) -> None:
        sent = go_usage(str(uuid.UUID(int=n)), "7.5e-7", user=4242)
        statuses.append((await gateway.post(USAGE, content=sent, headers=HEADERS)).status_code)

    for start in range(0, EVENTS, 25):  # as a busy gateway sends them: a few at a time
        await asyncio.gather(*(post(n) for n in range(start, min(start + 25, EVENTS))))
    assert set(statuses) == {200}
    charged = -(await linked.get_account("4242")).balance
    assert abs(charged - EVENTS * 3 / 4) <= 1, charged
    assert (await linked.verify_account("4242")).valid
