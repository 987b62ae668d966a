"""Real ``creditsd serve`` processes: killed mid-flight, and two at once on one database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import create_key, make_settings

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    database_url: str,
    workdir: Path,
    *,
    config: Path | None = None,
    open_files: int | None = None,
) -> Iterator[str]:
    """Run ``creditsd serve`` until the block ends (or the test kills it), with at most
    ``open_files`` descriptors if given."""
    port = free_port()
    env = {
        **os.environ,
        "CREDITSD_DATABASE_URL": database_url,
        "CREDITSD_CONFIG": str(config or os.devnull),
    }
    log = (workdir / f"serve-{port}.log").open("w")
    limit = [] if open_files is None else ["prlimit", f"--nofile={open_files}:{open_files}"]
    process = subprocess.Popen(
        [*limit, sys.executable, "-m", "creditsd", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / f"serve-{port}.log").read_text())
            time.sleep(0.1)
        serve.processes[base] = process  # type: ignore[attr-defined]
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        log.close()


serve.processes = {}  # type: ignore[attr-defined]


@asynccontextmanager
async def client(base: str, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=60, limits=limits
    ) as http:
        yield http


async def eventually(check: Callable[[], bool], seconds: float) -> bool:
    """Whether ``check`` comes true within ``seconds``, looking every 50 ms."""
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def admin_secret(database_url: str) -> str:
    from creditsd.inprocess import Ledger

    async with await Ledger.connect(make_settings(database_url)) as ledger:
        return await create_key(ledger, "admin", "ops")


async def test_sigkill_under_load_loses_no_acknowledged_charge(
    database_url: str, tmp_path: Path
) -> None:
    secret = await admin_secret(database_url)
    acknowledged: dict[str, str] = {}  # idempotency key -> transfer id
    unanswered: set[str] = set()
    with serve(database_url, tmp_path) as base:
        async with client(base, secret) as http:
            await http.post("/v1/grants", json={"account_id": "u", "amount": 1_000_000})

            async def charge_forever(worker: int) -> None:
                for n in range(100_000):
                    key = f"w{worker}-{n}"
                    try:
                        response = await http.post(
                            "/v1/charges",
                            json={"account_id": "u", "amount": 1},
                            headers={"Idempotency-Key": key},
                        )
                    except httpx.TransportError:
                        unanswered.add(key)
                        return
                    assert response.status_code == 201, response.text
                    acknowledged[key] = response.json()["id"]
                    if len(acknowledged) >= 200:
                        enough.set()

            enough = asyncio.Event()
            workers = [asyncio.create_task(charge_forever(w)) for w in range(16)]
            await enough.wait()
            serve.processes[base].send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            await asyncio.gather(*workers)

    assert len(acknowledged) >= 200
    with serve(database_url, tmp_path) as base:
        async with client(base, secret) as http:
            for key, transfer_id in acknowledged.items():
                found = await http.get(f"/v1/transactions/{transfer_id}")
                assert found.status_code == 200, key
                assert found.json()["idempotency_key"] == key
            # What was in flight is either done once or not at all: retrying settles it.
            for key in unanswered:
                retried = await http.post(
                    "/v1/charges",
                    json={"account_id": "u", "amount": 1},
                    headers={"Idempotency-Key": key},
                )
                assert retried.status_code == 201
            verified = (await http.get("/v1/accounts/u/verify")).json()
            assert verified["valid"] is True
            charges = len(acknowledged) + len(unanswered)
            assert verified["stored"] == 1_000_000 - charges


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"], indirect=True)
async def test_two_processes_share_one_balance_without_overdraft(
    database_url: str, tmp_path: Path
) -> None:
    secret = await admin_secret(database_url)
    with serve(database_url, tmp_path) as first, serve(database_url, tmp_path) as second:
        async with client(first, secret) as one, client(second, secret) as two:
            await one.post("/v1/grants", json={"account_id": "hot", "amount": 100})

            async def charge(n: int) -> int:
                http = one if n % 2 else two
                response = await http.post(
                    "/v1/charges",
                    json={"account_id": "hot", "amount": 1},
                    headers={"Idempotency-Key": f"c{n}"},
                )
                return response.status_code

            statuses = await asyncio.gather(*(charge(n) for n in range(300)))
            assert statuses.count(201) == 100
            assert statuses.count(402) == 200
            account = (await two.get("/v1/accounts/hot")).json()
            assert (account["balance"], account["available"]) == (0, 0)
            assert (await one.get("/v1/accounts/hot/verify")).json()["valid"] is True


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"], indirect=True)
async def test_two_processes_keep_a_member_within_its_day_limit(
    database_url: str, tmp_path: Path
) -> None:
    secret = await admin_secret(database_url)
    with serve(database_url, tmp_path) as first, serve(database_url, tmp_path) as second:
        async with client(first, secret) as one, client(second, secret) as two:
            await one.post("/v1/grants", json={"account_id": "team", "amount": 1000})
            limits = {"limits": [{"amount": 30, "period": "day"}]}
            assert (await two.put("/v1/accounts/team/members/ada", json=limits)).is_success

            async def hold(n: int) -> int:
                http = one if n % 2 else two
                asked = {"account_id": "team", "member": "ada", "amount": 1, "expires_in": 60}
                return (await http.post("/v1/holds", json=asked)).status_code

            statuses = await asyncio.gather(*(hold(n) for n in range(50)))
            assert (statuses.count(201), statuses.count(402)) == (30, 20)
            (limit,) = (await one.get("/v1/accounts/team/limits")).json()["data"]
            assert (limit["spent"], limit["held"], limit["remaining"]) == (0, 30, 0)
            account = (await two.get("/v1/accounts/team")).json()
            assert (account["held"], account["available"]) == (30, 970)


def test_sighup_republishes_the_catalog_and_a_bad_file_keeps_the_old_one(
    database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "creditsd.toml"
    config.write_text("[pricing.features.chat_message]\nprice = 10\n")
    secret = asyncio.run(admin_secret(database_url))
    headers = {"Authorization": f"Bearer {secret}"}
    with serve(database_url, tmp_path, config=config) as base:

        def catalog() -> Any:
            return httpx.get(f"{base}/v1/pricing", headers=headers).json()

        assert (catalog()["version"], catalog()["features"]["chat_message"]["price"]) == (1, 10)
        process = serve.processes[base]  # type: ignore[attr-defined]

        def hang_up_until(check: Callable[[], bool]) -> None:
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while not check():
                assert time.monotonic() < deadline
                time.sleep(0.1)

        config.write_text("[pricing.features.chat_message]\nprice = 12\n")
        hang_up_until(lambda: catalog()["version"] == 2)
        assert catalog()["features"]["chat_message"]["price"] == 12
        config.write_text("[pricing.features.chat_message]\nprice = -1\n")
        log = tmp_path / f"serve-{base.rsplit(':', 1)[1]}.log"
        hang_up_until(lambda: "pricing not reloaded" in log.read_text())
        assert "pricing.features.chat_message.price (line 2)" in log.read_text()
        assert catalog()["version"] == 2
        assert process.poll() is None  # still serving
        said = log.read_text()  # each publish says what changed, in the service's own log
        assert "published catalog version 1 by creditsd" in said
        assert "published catalog version 2 by sighup: features.chat_message.price: 10 → 12" in said


@pytest.mark.parametrize("backend", ["sqlite"])  # what serve logs, whatever the database
def test_serve_logs_one_json_line_per_request_and_serves_metrics(
    database_url: str, tmp_path: Path
) -> None:
    secret = asyncio.run(admin_secret(database_url))
    with serve(database_url, tmp_path) as base:
        health = httpx.get(f"{base}/healthz", headers={"X-Request-Id": "probe-1"})
        charge = httpx.post(
            f"{base}/v1/charges",
            json={"account_id": "u", "amount": 1},
            headers={"Authorization": f"Bearer {secret}"},
        )
        metrics = httpx.get(f"{base}/metrics")
        log = tmp_path / f"serve-{base.rsplit(':', 1)[1]}.log"
        assert health.headers["X-Request-Id"] == "probe-1"
        assert charge.status_code == 402
        assert metrics.status_code == 200
        assert 'creditsd_insufficient_credits_total{operation="charge"} 1.0' in metrics.text

        def lines() -> list[dict[str, Any]]:
            text = log.read_text().splitlines()
            return [json.loads(line) for line in text if line.startswith("{")]

        deadline = time.monotonic() + 5
        while len(lines()) < 4:  # the readiness probe, then ours
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        *_, probe, charged, scraped = lines()
    assert (probe["request_id"], probe["route"], probe["status"]) == ("probe-1", "/healthz", 200)
    assert (charged["route"], charged["status"], charged["key_name"]) == ("/v1/charges", 402, "ops")
    assert charged["request_id"] == charge.headers["X-Request-Id"]
    assert (scraped["route"], scraped["client"]) == ("/metrics", "127.0.0.1")
    assert secret not in log.read_text()
    assert "HTTP/1.1" not in log.read_text()  # no uvicorn access lines besides ours


async def test_sigkill_with_undelivered_webhooks_delivers_each_once_after_restart(
    database_url: str, tmp_path: Path
) -> None:
    from tests.webhooks.receiver import Receiver

    config = tmp_path / "creditsd.toml"
    config.write_text(
        "[webhooks]\npoll_interval = 0.05\ntimeout_seconds = 1\n"
        "backoff_seconds = 0.2\nmax_backoff_seconds = 1\n"
    )
    secret = await admin_secret(database_url)
    with Receiver() as receiver:
        receiver.failures_left = 10**9  # down: nothing gets through yet
        with serve(database_url, tmp_path, config=config) as base:
            async with client(base, secret) as http:
                endpoint = await http.post(
                    "/v1/webhook-endpoints",
                    json={"url": receiver.url, "events": ["charge.succeeded"]},
                )
                assert endpoint.status_code == 201
                for n in range(3):
                    await http.post("/v1/grants", json={"account_id": f"w{n}", "amount": 100})
                charged = set()
                for n in range(30):
                    response = await http.post(
                        "/v1/charges", json={"account_id": f"w{n % 3}", "amount": 1}
                    )
                    assert response.status_code == 201
                    charged.add(response.json()["id"])
            assert await eventually(lambda: len(receiver.received) >= 3, 10)  # trying, failing
            serve.processes[base].send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        receiver.failures_left = 0
        with serve(database_url, tmp_path, config=config):

            def all_arrived() -> bool:
                delivered = [r for r in receiver.received if r.answered == 200]
                return len({r.headers["webhook-id"] for r in delivered}) == 30

            assert await eventually(all_arrived, 60)
            await asyncio.sleep(1)  # anything doubled would arrive now
    delivered = [r for r in receiver.received if r.answered == 200]
    assert {r.json()["data"]["transfer"]["id"] for r in delivered} == charged
    assert len(delivered) == 30  # each exactly once
