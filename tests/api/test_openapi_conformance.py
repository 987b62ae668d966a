"""Schemathesis drives a real ``creditsd serve`` from its own ``/openapi.json``: every request
the schema allows gets an answer the schema describes, and none is a server error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clerk.conftest import CLERK_SECRET
from tests.gateway.conftest import INTERNAL_SECRET
from tests.stripe.conftest import PACKS, PRICES, WEBHOOK_SECRET
from tests.stripe.fake import FakeStripe
from tests.test_processes import admin_secret, serve
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.slow

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
SECONDS_PER_BACKEND = 30


@pytest.fixture
def stripe_api() -> Iterator[FakeStripe]:
    """The Stripe API double the checkout sessions go to."""
    with FakeStripe(prices=PRICES) as running:
        yield running


@pytest.fixture
def gateway_api() -> Iterator[Receiver]:
    """The gateway's side of the link: takes the usage and balance syncs creditsd sends."""
    with Receiver() as running:
        yield running


def configuration(stripe_api: FakeStripe, gateway_api: Receiver) -> str:
    """Everything switched on: Stripe packs, Clerk plans and webhooks, both gateway links."""
    packs = "".join(
        f'[packs.{name}]\ncredits = {pack["credits"]}\nprice_id = "{pack["price_id"]}"\n'
        for name, pack in PACKS.items()
    )
    return f"""
[stripe]
secret_key = "{stripe_api.api_key}"
webhook_secret = "{WEBHOOK_SECRET}"
publishable_key = "pk_test_creditsd"
api_base = "{stripe_api.api_base}"

[clerk]
webhook_secret = "{CLERK_SECRET}"

[gateway]
enabled = true
base_url = "{gateway_api.url}"
internal_secret = "{INTERNAL_SECRET}"

[app_link]
enabled = true
base_url = "{gateway_api.url}"
internal_secret = "{INTERNAL_SECRET}"

[plans.cplan_pro]
credits = 5000

{packs}"""


def test_the_server_answers_as_its_openapi_says(
    database_url: str, tmp_path: Path, stripe_api: FakeStripe, gateway_api: Receiver
) -> None:
    config = tmp_path / "creditsd.toml"
    config.write_text(configuration(stripe_api, gateway_api))
    secret = asyncio.run(admin_secret(database_url))
    with serve(database_url, tmp_path, config=config) as base:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/openapi.json",
                "--phases=examples,coverage,fuzzing",
                f"--checks={CHECKS}",
                "--max-examples=20",
                f"--max-time={SECONDS_PER_BACKEND}",
                "--seed=1",
                "--workers=1",  # threads trip CPython 3.11 (ast.parse: recursion depth mismatch)
                "--no-color",
                "--generation-database=none",
                f"--header=Authorization: Bearer {secret}",
                f"--header=X-Internal-Secret: {INTERNAL_SECRET}",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=SECONDS_PER_BACKEND * 3,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
