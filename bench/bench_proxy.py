"""What the OpenAI-compatible proxy adds to a chat completion, beside LiteLLM's proxy.

Three targets answer the same ``POST …/chat/completions`` (``bench/proxy.lua``), all in
front of the same fake upstream (``bench/fake_upstream.py``, its own process), in one run:

- **direct**: the fake upstream itself, the baseline;
- **creditsd**: one ``creditsd serve`` process on a fresh SQLite file (or a fresh
  PostgreSQL database beside ``--database-url``), an app key, a funded account named in
  ``X-Creditsd-Account``: each call is held for its estimate, forwarded, and captured at the
  usage the upstream reports;
- **LiteLLM**: ``litellm --num_workers 1`` from PyPI (``litellm[proxy]`` at
  :data:`LITELLM_VERSION`, installed here into ``bench/.litellm-venv``, never a creditsd
  dependency) with one model routed to the fake upstream as an OpenAI-compatible base, a
  master key (it refuses to start without one), no database, logging off.

Each target first answers one request, checked for a 200 and the upstream's completion.
Then ``wrk`` measures it twice for ``--duration`` seconds after a second of warm-up: one
connection (``-t1 -c1``: p50/p99 of one call at a time; "added" is the target's minus
direct's) and ``--connections`` connections on two threads (requests/s of one process).
The server's CPU time per request is read from ``/proc`` around the second run: unlike
requests/s, it stays comparable when other work shares the machine.

Afterwards the ledger must have billed every completion creditsd forwarded (as counted by
the upstream): the balances are down by that count × the price of the upstream's usage,
and no hold is left open. ``--accounts N`` funds N accounts and names one at random in each
call (one hot account by default).

    .venv/bin/python bench/bench_proxy.py [--duration 10] [--connections 64] [--accounts 1]
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--skip-litellm] [--stream]

``--stream`` asks for streamed completions.

``wrk`` must be on the ``PATH`` (``apt-get install wrk``); the first run installs LiteLLM
(~750 MB, half a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bench_charges import Cell, command_environment, dsn, free_port, parse_wrk
from creditsd import tables
from creditsd.config import load_settings
from creditsd.inprocess import Ledger
from creditsd.keys import service as keys
from creditsd.kit import db
from creditsd.pricing.providers import OpenAIChatUsage
from fake_upstream import CONTENT, MODEL, USAGE

BENCH = Path(__file__).parent
SCRIPT = BENCH / "proxy.lua"
# Pinned: the newest whose proxy extra installs from PyPI today (later ones need a
# litellm-proxy-extras that is not there), and older than 1.107, which PyPI no longer has
# and which was reported compromised.
LITELLM_VERSION = "1.106.12"
LITELLM_VENV = BENCH / ".litellm-venv"
UPSTREAM_KEY = "sk-bench-upstream"
MASTER_KEY = "sk-bench-litellm-master"
FUNDS = 10**15  # minor units each account starts with: more than any run spends
SCRATCH = "creditsd_proxy_bench"
WARM_UP = 1  # second of load before each target is measured
# The goals (issue 21): what creditsd adds to a call at p50 (one connection), its server CPU
# per call (loaded), and its requests/s beside LiteLLM's in the same run.
ADDED_P50_MS = 2.0
CPU_US = 2_000
LITELLM_RATIO = 4.0


@dataclass(frozen=True)
class Target:
    """One server to measure: where it answers, what it is sent, which process it is."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int


@dataclass(frozen=True)
class Measured:
    """A target's one-connection run, its loaded run, and its CPU per loaded request."""

    sequential: Cell
    loaded: Cell
    cpu_us: float


# Processes


@asynccontextmanager
async def running(
    name: str, argv: Sequence[str], env: dict[str, str], ready: str, log: IO[bytes]
) -> AsyncIterator[int]:
    """``argv`` as a process until the block ends, once ``ready`` answers 2xx; its pid."""
    process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(1200):
                if process.returncode is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(log)}")
                try:
                    if (await http.get(ready)).is_success:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"{name} did not get ready in 120 s:\n{tail(log)}")
        yield process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def tail(log: IO[bytes], size: int = 3000) -> str:
    """The end of a process's log."""
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time ``pid`` has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The fake upstream


async def completions_served(upstream: str) -> int:
    """How many completions the fake upstream has answered."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{upstream}/count")
        count: int = answer.json()["completions"]
        return count


# creditsd


def creditsd_settings(database_url: str, upstream: str) -> dict[str, str]:
    """The settings of ``creditsd serve`` and of the bench's own Ledger, as variables."""
    return {
        "CREDITSD_DATABASE_URL": database_url,
        "CREDITSD_PROXY__BASE_URL": f"{upstream}/v1",
        "CREDITSD_PROXY__API_KEY": UPSTREAM_KEY,
    }


@asynccontextmanager
async def fresh_database(server_url: str | None) -> AsyncIterator[str]:
    """A new database for the run: a SQLite file in a scratch folder, or ``creditsd_proxy_
    bench`` made on the PostgreSQL server of ``server_url`` and dropped at the end."""
    if server_url is None:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/creditsd.db"
        return
    admin = dsn(server_url)
    conn = await asyncpg.connect(admin)
    await conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {SCRATCH}")
    await conn.close()
    try:
        yield dsn(server_url, SCRATCH)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
        await conn.close()


def account(number: int) -> str:
    """The name of one of the accounts that pay (``proxy.lua`` names them alike)."""
    return f"bench-{number}"


async def open_books(settings: dict[str, str], accounts: int) -> tuple[str, int]:
    """Migrate, publish the catalog, fund ``accounts`` accounts; an app key's secret, and
    what one completion of the fake upstream's usage costs."""
    ledger = await Ledger.connect(
        load_settings(os.devnull, environ=settings), migrate=True, publish_pricing=True
    )
    try:
        _key, secret = await db.run(
            ledger.engine,
            lambda conn: keys.create_key(conn, "bench", "app", ledger.now(), actor="bench"),
        )
        for number in range(accounts):
            await ledger.grant(account(number), FUNDS, reason="bench_proxy")
        price = await ledger.quote(OpenAIChatUsage.model_validate(USAGE).use(MODEL))
    finally:
        await ledger.close()
    return secret, price.amount


async def check_books(
    settings: dict[str, str], accounts: int, forwarded: int, price: int
) -> list[str]:
    """Whether every forwarded completion was billed, and no hold is left open; the
    findings, each starting with ✓ or ✗."""

    async def look(conn: AsyncConnection) -> tuple[int, int, dict[str, int]]:
        customers = tables.accounts.c.kind == "customer"  # only the bench's, in a new database
        found = await conn.execute(
            select(func.sum(tables.accounts.c.balance), func.sum(tables.accounts.c.held)).where(
                customers
            )
        )
        balance, held = found.one()
        by_status = await conn.execute(
            select(tables.holds.c.status, func.count()).group_by(tables.holds.c.status)
        )
        return int(balance), int(held), dict(by_status.all())

    ledger = await Ledger.connect(load_settings(os.devnull, environ=settings))
    try:
        balance, held, by_status = await db.run(ledger.engine, look, readonly=True)
    finally:
        await ledger.close()
    spent = FUNDS * accounts - balance
    billed = forwarded * price
    open_holds = by_status.get("open", 0)
    return [
        f"{'✓' if spent == billed else '✗'} balances down by {spent:,} minor units;"
        f" {forwarded:,} completions forwarded × {price:,} = {billed:,}",
        f"{'✓' if open_holds == 0 and held == 0 else '✗'} holds: "
        + ", ".join(f"{count:,} {status}" for status, count in sorted(by_status.items()))
        + f"; {held:,} held",
    ]


# LiteLLM


def litellm_version() -> str | None:
    """The LiteLLM installed in :data:`LITELLM_VENV`, if any."""
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def install_litellm() -> None:
    """LiteLLM's proxy in its own virtual environment, unless it is there already."""
    if litellm_version() == LITELLM_VERSION and (LITELLM_VENV / "bin" / "litellm").exists():
        return
    requirement = f"litellm[proxy]=={LITELLM_VERSION}"
    print(f"installing {requirement} into {LITELLM_VENV} …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, requirement], check=True)


def litellm_config(folder: Path, upstream: str) -> Path:
    """One model routed to the fake upstream; a master key; no database; no logging."""
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": MODEL,  # "openai/…": an OpenAI-compatible API at api_base
                    "api_base": f"{upstream}/v1",
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "litellm_settings": {
            "suppress_debug_info": True,
            "turn_off_message_logging": True,
            "telemetry": False,
        },
        "general_settings": {"master_key": MASTER_KEY, "disable_spend_logs": True},
    }
    path = folder / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def litellm_environment() -> dict[str, str]:
    """Ours, with no database for LiteLLM to find, its log at ERROR, and its cost map read
    from the package rather than fetched."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CREDITSD_", "LITELLM_")) and k != "DATABASE_URL"
    }
    return {**inherited, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


# Measuring


async def check_answer(target: Target, stream: bool) -> None:
    """One call: a 200 with the upstream's completion, else the run stops here."""
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(target.url, json=body, headers=target.headers)
    text = answer.text
    if stream:
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        chunks = [json.loads(event) for event in events if event != "[DONE]"]
        said = "".join(
            choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
        )
        good = events[-1:] == ["[DONE]"] and said == CONTENT
    else:
        try:
            completion = answer.json()
            said = completion["choices"][0]["message"]["content"]
            good = said == CONTENT and completion["usage"]["prompt_tokens"] == 1_000
        except (ValueError, KeyError, IndexError, TypeError):
            good = False
    if answer.status_code != 200 or not good:
        raise RuntimeError(f"{target.name} answered {answer.status_code}: {text[:500]}")


async def wrk(
    target: Target, connections: int, threads: int, seconds: float, options: argparse.Namespace
) -> Cell:
    """``wrk`` against ``target`` for ``seconds`` (whole seconds, as wrk takes them), each
    request naming one of ``--accounts`` accounts."""
    headers = [arg for name, value in target.headers.items() for arg in ("-H", f"{name}: {value}")]
    process = await asyncio.create_subprocess_exec(
        "wrk",
        *(f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"),
        *("--latency", "-s", str(SCRIPT), *headers, target.url),
        *("--", "stream" if options.stream else "plain", str(options.accounts)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"wrk failed:\n{out.decode()}")
    return parse_wrk(out.decode())


async def measure(target: Target, options: argparse.Namespace) -> Measured:
    """One connection, then ``--connections``; each after a second of warm-up load."""
    await check_answer(target, options.stream)
    await wrk(target, 1, 1, WARM_UP, options)
    sequential = await wrk(target, 1, 1, options.duration, options)
    threads = min(2, options.connections)
    await wrk(target, options.connections, threads, WARM_UP, options)
    before = cpu_seconds(target.pid)
    loaded = await wrk(target, options.connections, threads, options.duration, options)
    cpu = cpu_seconds(target.pid) - before
    requests = loaded.rate * max(1, round(options.duration))
    for cell in (sequential, loaded):
        if cell.errors:
            raise RuntimeError(
                f"{target.name}: {cell.errors} failed requests; first: {cell.first_error}"
            )
    return Measured(sequential, loaded, cpu / requests * 1e6 if requests else 0.0)


# The run


async def run(options: argparse.Namespace) -> None:
    """The fake upstream, then each target in front of it; the report."""
    results: dict[str, Measured] = {}
    with tempfile.TemporaryFile() as log:
        port = free_port()
        upstream = f"http://127.0.0.1:{port}"
        argv = [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(port)]
        argv += ["--key", UPSTREAM_KEY]
        ready = f"{upstream}/count"
        async with running("the fake upstream", argv, dict(os.environ), ready, log) as pid:
            headers = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
            direct = Target("direct", f"{upstream}/v1/chat/completions", headers, pid)
            results["direct"] = await measure(direct, options)
            results["creditsd"], books = await through_creditsd(upstream, options)
            if not options.skip_litellm:
                results["LiteLLM"] = await through_litellm(upstream, options)
    report(results, books, options)


async def through_creditsd(
    upstream: str, options: argparse.Namespace
) -> tuple[Measured, list[str]]:
    """``creditsd serve`` measured, then its books checked."""
    async with fresh_database(options.database_url) as url:
        settings = creditsd_settings(url, upstream)
        secret, price = await open_books(settings, options.accounts)
        before = await completions_served(upstream)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "creditsd", "serve", "--no-migrate"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        environment = command_environment(settings)
        with tempfile.TemporaryFile() as log:
            async with running("creditsd serve", argv, environment, f"{base}/readyz", log) as pid:
                headers = {"Authorization": f"Bearer {secret}", "X-Creditsd-Account": account(0)}
                target = Target("creditsd", f"{base}/openai/v1/chat/completions", headers, pid)
                found = await measure(target, options)
        # Stopped: every call it took is answered, and billed or released.
        forwarded = await completions_served(upstream) - before
        return found, await check_books(settings, options.accounts, forwarded, price)


async def through_litellm(upstream: str, options: argparse.Namespace) -> Measured:
    """LiteLLM's proxy, installed if need be, measured."""
    install_litellm()
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile() as log:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [str(LITELLM_VENV / "bin" / "litellm")]
        argv += ["--config", str(litellm_config(Path(folder), upstream))]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
        ready = f"{base}/health/liveliness"
        async with running("LiteLLM", argv, litellm_environment(), ready, log) as pid:
            headers = {"Authorization": f"Bearer {MASTER_KEY}"}
            target = Target("LiteLLM", f"{base}/v1/chat/completions", headers, pid)
            return await measure(target, options)


def report(results: dict[str, Measured], books: list[str], options: argparse.Namespace) -> None:
    """The table, the ratios, the goals and the ledger's check."""
    backend = "PostgreSQL" if options.database_url else "SQLite"
    kind = "streamed" if options.stream else "non-streamed"
    paying = "1 account" if options.accounts == 1 else f"{options.accounts:,} accounts"
    print(
        f"\n{kind} chat completions, {options.duration:g} s a run; one connection for"
        f" latency, {options.connections} for requests/s; creditsd on {backend}, {paying}"
        f" paying; LiteLLM {LITELLM_VERSION}; load average {os.getloadavg()[1]:.1f}\n"
    )
    print(
        "| target | p50 ms | p99 ms | added p50 ms | added p99 ms | requests/s | CPU µs/request |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    direct = results["direct"]
    for name, found in results.items():
        seq = found.sequential
        added = (
            ("-", "-")
            if name == "direct"
            else (
                f"{seq.p50 - direct.sequential.p50:.3f}",
                f"{seq.p99 - direct.sequential.p99:.3f}",
            )
        )
        print(
            f"| {name} | {seq.p50:.3f} | {seq.p99:.3f} | {added[0]} | {added[1]} |"
            f" {found.loaded.rate:,.0f} | {found.cpu_us:,.0f} |"
        )
    ours = results["creditsd"]
    added_p50 = ours.sequential.p50 - direct.sequential.p50
    print(f"\ncreditsd / direct requests/s: {ours.loaded.rate / direct.loaded.rate:.3f}")
    lines = [
        f"{'✓' if added_p50 <= ADDED_P50_MS else '✗'} creditsd adds ≤ {ADDED_P50_MS:g} ms at"
        f" p50: {added_p50:.2f} ms",
        f"{'✓' if ours.cpu_us <= CPU_US else '✗'} ≤ {CPU_US:,} µs of server CPU per call:"
        f" {ours.cpu_us:,.0f} µs",
    ]
    if "LiteLLM" in results:
        theirs = results["LiteLLM"]
        ratio = ours.loaded.rate / theirs.loaded.rate
        cpu = theirs.cpu_us / ours.cpu_us if ours.cpu_us else 0.0
        print(f"creditsd / LiteLLM requests/s: {ratio:.2f}")
        print(f"LiteLLM / creditsd CPU per request: {cpu:.2f}")
        lines.append(
            f"{'✓' if ratio >= LITELLM_RATIO else '✗'} creditsd ≥ {LITELLM_RATIO:g}× LiteLLM's"
            f" requests/s: {ratio:.2f}×"
        )
    print("\ngoals (✓ met, ✗ missed):")
    for line in lines:
        print(f"- {line}")
    print("\nthe ledger after the run:")
    for line in books:
        print(f"- {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds a run")
    parser.add_argument("--connections", type=int, default=64, help="for requests/s")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to make a fresh database on (default: a SQLite file)",
    )
    parser.add_argument(
        "--accounts", type=int, default=1, help="accounts that pay, one at random a call"
    )
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--stream", action="store_true", help="streamed completions (SSE, a usage chunk)"
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not on the PATH (apt-get install wrk)")
    if options.accounts < 1:
        parser.error("--accounts takes 1 or more")
    if options.database_url and not options.database_url.startswith("postgres"):
        parser.error("--database-url takes a postgresql:// URL")
    try:
        asyncio.run(run(options))
    except RuntimeError as exc:  # a target that failed its check, or a process that died
        sys.exit(f"bench_proxy: {exc}")


if __name__ == "__main__":
    main()
