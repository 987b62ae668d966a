"""Image generations: held for ``n`` images, billed apiece on the images returned."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from creditsd.inprocess import Ledger
from tests.proxy.conftest import post
from tests.proxy.upstream import Upstream

IMAGE_MODEL = "openai/dall-e-3"  # $0.04 an image: 4 credits, 40,000 minor units


async def test_images_are_billed_apiece(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    answer = await client.images.generate(model=IMAGE_MODEL, prompt="a lighthouse", n=2)
    assert answer.data is not None and len(answer.data) == 2
    account = await proxied.get_account("user_1")
    assert (account.balance, account.held) == (10 * proxied.money.unit - 80_000, 0)
    (capture,) = [t for t in (await proxied.transactions("user_1")).items if t.kind == "capture"]
    assert capture.pricing is not None
    assert "2 images × 0.04 USD/image" in capture.pricing["summary"]


async def test_fewer_images_returned_cost_less(proxied: Ledger, upstream: Upstream) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.images_returned = 1
    answer = await post(
        proxied, "/images/generations", {"model": IMAGE_MODEL, "prompt": "two cats", "n": 2}
    )
    assert answer.status_code == 200
    assert (await proxied.get_account("user_1")).balance == 10 * proxied.money.unit - 40_000


async def test_images_the_balance_cannot_cover_are_402_before_the_upstream(
    proxied: Ledger, client: openai.AsyncOpenAI, upstream: Upstream
) -> None:
    await proxied.grant("user_1", 3 * proxied.money.unit)  # less than one image
    with pytest.raises(openai.APIStatusError) as refused:
        await client.images.generate(model=IMAGE_MODEL, prompt="a lighthouse")
    assert refused.value.status_code == 402
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "openai/gpt-4o-mini", "prompt": "x"}, 404),  # not priced per image
        ({"model": "acme/unknown", "prompt": "x"}, 404),
        ({"prompt": "x"}, 404),
        ({"model": IMAGE_MODEL, "prompt": "x", "n": 0}, 400),
        ({"model": IMAGE_MODEL, "prompt": "x", "n": 11}, 400),
        ({"model": IMAGE_MODEL, "prompt": "x", "n": "2"}, 400),
        ({"model": IMAGE_MODEL, "prompt": "x", "n": 2.0}, 400),
        ({"model": IMAGE_MODEL, "prompt": "x", "n": True}, 400),
        ({"model": IMAGE_MODEL, "prompt": "x", "stream": True}, 400),
    ],
)
async def test_a_bad_image_call_is_a_4xx_and_reaches_no_upstream(
    proxied: Ledger, upstream: Upstream, body: dict[str, Any], status: int
) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    answer = await post(proxied, "/images/generations", body)
    assert answer.status_code == status
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


async def test_an_image_refusal_upstream_costs_nothing(proxied: Ledger, upstream: Upstream) -> None:
    await proxied.grant("user_1", 10 * proxied.money.unit)
    upstream.behaviour = "refuse"
    upstream.refusal = 400
    answer = await post(proxied, "/images/generations", {"model": IMAGE_MODEL, "prompt": "x"})
    assert answer.status_code == 400
    account = await proxied.get_account("user_1")
    assert (account.balance, account.held) == (10 * proxied.money.unit, 0)
