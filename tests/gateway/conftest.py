"""A ledger linked to a gateway: the internal secret and seed 000's defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from creditsd.inprocess import Ledger
from tests.conftest import LedgerFactory, client_for

INTERNAL_SECRET = "gateway-internal-secret-0123456789"


@pytest.fixture
async def linked(make_ledger: LedgerFactory) -> Ledger:
    """Both links' secret set, 100 credits a dollar (the default catalog), no sign-up grant."""
    return await make_ledger(
        gateway={"internal_secret": INTERNAL_SECRET}, app_link={"internal_secret": INTERNAL_SECRET}
    )


@pytest.fixture
async def gateway(linked: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's client: the internal secret on every request, no API key."""
    async with client_for(linked, "no-key") as client:
        client.headers["X-Internal-Secret"] = INTERNAL_SECRET
        yield client
