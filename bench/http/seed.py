"""Open acct_0 … acct_9999 on a running creditsd, each with a grant the benchmark never uses up.

The key must be an admin key (initial grants need one):

    .venv/bin/python bench/http/seed.py http://127.0.0.1:8000 cdk_…
"""

from __future__ import annotations

import asyncio
import sys

import httpx

ACCOUNTS = 10_000
GRANT = 1_000_000_000


async def seed(base_url: str, secret: str) -> None:
    """PUT every account with its initial grant, 32 at a time."""
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
    ) as client:

        async def open_account(n: int) -> None:
            async with limit:
                response = await client.put(f"/v1/accounts/acct_{n}", json={"initial_grant": GRANT})
                response.raise_for_status()

        await asyncio.gather(*(open_account(n) for n in range(ACCOUNTS)))


if __name__ == "__main__":
    asyncio.run(seed(sys.argv[1], sys.argv[2]))
