"""A ledger with webhooks on, a local receiver, and the worker driven step by step."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from creditsd.inprocess import Ledger
from creditsd.worker import Deliverer
from tests.conftest import LedgerFactory, body
from tests.webhooks.receiver import Receiver

WEBHOOKS = {"low_balance_threshold": 50, "backoff_seconds": 1, "max_age_seconds": 600}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An endpoint that answers 200 (or 503 while ``failures_left``)."""
    with Receiver() as running:
        yield running


@pytest.fixture
async def hooked(make_ledger: LedgerFactory) -> Ledger:
    """balance.low below 50 credits; retries after about 1 s, doubling; dead after 10 min."""
    return await make_ledger(webhooks=WEBHOOKS)


@pytest.fixture
async def deliverer(hooked: Ledger) -> AsyncIterator[Deliverer]:
    """The outbox worker of ``hooked``, run one batch at a time by the test."""
    worker = Deliverer(hooked)
    yield worker
    await worker.close()


async def register(api: httpx.AsyncClient, url: str, events: list[str]) -> tuple[str, str]:
    """An endpoint's id and signing secret."""
    response = await api.post("/v1/webhook-endpoints", json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    created = body(response)
    return created["id"], created["secret"]
