"""What clients of two ``creditsd serve`` processes see while PostgreSQL goes away and comes
back, and whether every acknowledged charge is in the ledger exactly once.

A PostgreSQL cluster of its own is made with ``initdb`` in a scratch directory and run on
a free port (never the shared server). Two ``creditsd serve`` processes use it. Clients
charge without pause, each charge with a fresh idempotency key; a client that gets a 503
waits what ``Retry-After`` says and sends the same request again (so does one whose
connection dropped), as a billing client should. Meanwhile the database is, in turn:

- **stopped** (``pg_ctl stop -m fast``, then started again),
- **crashed** (``pg_ctl stop -m immediate``, then started: crash recovery),
- **paused** (every PostgreSQL process stopped with SIGSTOP, then continued).

Each phase's row counts the answers by status, the dropped connections, the slowest
answer, and the seconds from the database's return to the first charge acknowledged after
it. The last lines check the ledger: every acknowledged charge present once, none twice.

    .venv/bin/python bench/chaos_outage.py [--clients 32] [--outage 5] [--calm 4] [--logs DIR]

PostgreSQL's server programs are found with ``pg_config --bindir`` or under
``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

CREDITSD = str(Path(sys.executable).with_name("creditsd"))


def postgres_bin() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are."""
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=True)
        if (Path(bindir.stdout.strip()) / "initdb").exists():
            return Path(bindir.stdout.strip())
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise SystemExit("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    return Path(candidates[-1]).parent


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster in a scratch directory, run by this script's own user."""

    def __init__(self, root: Path) -> None:
        self.bin = postgres_bin()
        self.data = root / "data"
        self.port = free_port()
        self.log = root / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/chaos"
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._as_owner = owner
        if owner:
            shutil.chown(root, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_owner, *args], check=True, capture_output=True)

    def init(self) -> None:
        """``initdb`` with trust authentication on localhost."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str) -> None:
        """``pg_ctl stop -m mode`` (``fast``: a clean shutdown; ``immediate``: a crash)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and every backend."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def signal_all(self, signum: int) -> None:
        """Send one signal to the postmaster and all its children."""
        for pid in self.pids():
            os.kill(pid, signum)


def creditsd_env(url: str) -> dict[str, str]:
    """This environment without its creditsd settings, on the scratch cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDITSD_")}
    return {**env, "CREDITSD_CONFIG": os.devnull, "CREDITSD_DATABASE_URL": url}


@asynccontextmanager
async def served(url: str, log: Path) -> AsyncIterator[str]:
    """A ``creditsd serve`` process on a free port until the block ends; its address."""
    port = free_port()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            CREDITSD, "serve", "--no-migrate", "--port", str(port),
            env=creditsd_env(url), stdout=out, stderr=out,
        )  # fmt: skip
        address = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient() as probe:
                for _ in range(300):
                    try:
                        if (await probe.get(f"{address}/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"creditsd serve did not start; see {log}")
            yield address
        finally:
            process.terminate()
            await process.wait()


@dataclass
class Phase:
    """What clients saw while one thing was done to the database."""

    name: str
    statuses: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    back_at: float | None = None  # when the database was given back
    recovered_after: float | None = None  # seconds from then to the first 201
    retry_after: set[str] = field(default_factory=set)

    def saw(self, status: str, seconds: float, retry_after: str | None) -> None:
        self.statuses[status] += 1
        self.slowest = max(self.slowest, seconds)
        if retry_after is not None:
            self.retry_after.add(retry_after)
        if status == "201" and self.back_at is not None and self.recovered_after is None:
            self.recovered_after = time.monotonic() - self.back_at


class Chaos:
    """Clients charging through both processes while phases change under them."""

    def __init__(self, addresses: list[str], secret: str) -> None:
        self.addresses = addresses
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.phase = Phase("warm-up")
        self.phases: list[Phase] = []
        self.acknowledged: dict[str, str] = {}  # idempotency key -> transfer id
        self.running = True

    def enter(self, name: str) -> None:
        self.phase = Phase(name)
        self.phases.append(self.phase)

    async def client(self, number: int) -> None:
        address = self.addresses[number % len(self.addresses)]
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=address, headers=self.headers, timeout=30, limits=limits
        ) as http:
            sequence = 0
            while self.running:
                sequence += 1
                key = f"c{number}-{sequence}"
                await self.charge(http, f"acct-{number % 8}", key)

    async def charge(self, http: httpx.AsyncClient, account: str, key: str) -> None:
        """One charge, sent again with the same key until it is answered for good."""
        while True:
            phase = self.phase
            started = time.monotonic()
            try:
                answer = await http.post(
                    "/v1/charges",
                    json={"account_id": account, "amount": 1},
                    headers={"Idempotency-Key": key},
                )
            except httpx.TransportError as exc:
                phase.saw(f"dropped ({type(exc).__name__})", time.monotonic() - started, None)
                await asyncio.sleep(0.5)
                continue
            status = str(answer.status_code)
            phase.saw(status, time.monotonic() - started, answer.headers.get("Retry-After"))
            if answer.status_code == 201:
                self.acknowledged[key] = answer.json()["id"]
                return
            if answer.status_code != 503 or not self.running:
                return
            await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))


async def admin_key(url: str) -> str:
    """``creditsd keys create --scope admin``: the secret it prints last."""
    process = await asyncio.create_subprocess_exec(
        CREDITSD, "keys", "create", "--scope", "admin", "--name", "chaos",
        env=creditsd_env(url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"keys create failed: {err.decode()}")
    return out.decode().split()[-1]


async def outage(chaos: Chaos, name: str, cluster: Cluster, seconds: float, calm: float) -> None:
    """Take the database away for ``seconds`` in the phase's way, give it back, let it
    calm down for ``calm`` seconds."""
    chaos.enter(name)
    loop = asyncio.get_running_loop()
    if name == "paused":
        cluster.signal_all(signal.SIGSTOP)
        await asyncio.sleep(seconds)
        cluster.signal_all(signal.SIGCONT)
    else:
        await loop.run_in_executor(None, cluster.stop, "fast" if name == "stopped" else "immediate")
        await asyncio.sleep(seconds)
        await loop.run_in_executor(None, cluster.start)
    chaos.phase.back_at = time.monotonic()
    await asyncio.sleep(calm)


async def main(clients: int, seconds: float, calm: float, logs: Path | None) -> int:
    root = Path(tempfile.mkdtemp(prefix="creditsd-chaos-"))
    cluster = Cluster(root)
    cluster.init()
    cluster.start()
    try:
        admin = await asyncpg.connect(cluster.url.replace("/chaos", "/postgres"))
        await admin.execute("CREATE DATABASE chaos")
        await admin.close()
        migrate = await asyncio.create_subprocess_exec(
            CREDITSD, "migrate", env=creditsd_env(cluster.url), stdout=asyncio.subprocess.DEVNULL
        )
        if await migrate.wait():
            raise RuntimeError("creditsd migrate failed")
        secret = await admin_key(cluster.url)
        async with AsyncExitStack() as stack:
            addresses = [
                await stack.enter_async_context(served(cluster.url, root / f"serve{n}.log"))
                for n in (1, 2)
            ]
            chaos = Chaos(addresses, secret)
            async with httpx.AsyncClient(base_url=addresses[0], headers=chaos.headers) as http:
                for n in range(8):
                    grant = {"account_id": f"acct-{n}", "amount": 10_000_000}
                    (await http.post("/v1/grants", json=grant)).raise_for_status()
            workers = [asyncio.create_task(chaos.client(n)) for n in range(clients)]
            chaos.enter("before")
            await asyncio.sleep(calm)
            for name in ("stopped", "crashed", "paused"):
                await outage(chaos, name, cluster, seconds, calm)
            chaos.enter("after")
            await asyncio.sleep(calm)
            chaos.running = False
            await asyncio.gather(*workers)
        code = await report(chaos, cluster.url, clients, seconds)
        print_logged_causes(root)
        return code
    finally:
        cluster.stop("fast")
        if logs is not None:
            keep_logs(root, logs)
        shutil.rmtree(root, ignore_errors=True)


def keep_logs(root: Path, logs: Path) -> None:
    """Copy the servers' and PostgreSQL's logs out of the scratch directory."""
    logs.mkdir(parents=True, exist_ok=True)
    for log in root.glob("*.log"):
        shutil.copy(log, logs / log.name)


async def report(chaos: Chaos, url: str, clients: int, seconds: float) -> int:
    """Print the phases and the ledger check; non-zero when something was lost or doubled."""
    print(f"{clients} clients over 2 creditsd serve processes; each outage {seconds:g} s\n")
    print("| phase | answers by status | slowest answer | first 201 after the database is back |")
    print("|---|---|---|---|")
    for phase in chaos.phases:
        answers = ", ".join(f"{status}: {n}" for status, n in sorted(phase.statuses.items()))
        recovered = "" if phase.recovered_after is None else f"{phase.recovered_after:.2f} s"
        waits = ", ".join(sorted(phase.retry_after))
        hints = f" (Retry-After {waits})" if waits else ""
        print(f"| {phase.name} | {answers}{hints} | {phase.slowest:.2f} s | {recovered} |")
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT idempotency_key, count(*) AS n, min(id) AS id FROM transfers "
            "WHERE kind = 'charge' GROUP BY idempotency_key"
        )
    finally:
        await conn.close()
    stored = {row["idempotency_key"]: (row["n"], row["id"]) for row in rows}
    missing = [key for key in chaos.acknowledged if key not in stored]
    doubled = [key for key, (n, _id) in stored.items() if n > 1]
    changed = [
        key for key, tid in chaos.acknowledged.items() if stored.get(key, (0, tid))[1] != tid
    ]
    unanswered = len(stored) - len(chaos.acknowledged)
    print(
        f"\nacknowledged charges: {len(chaos.acknowledged)}; in the ledger: {len(stored)}; "
        f"missing: {len(missing)}; doubled: {len(doubled)}; answered with another id: "
        f"{len(changed)}; written but never acknowledged (client stopped): {unanswered}"
    )
    failures = sum(
        n
        for phase in chaos.phases
        for status, n in phase.statuses.items()
        if status.startswith(("5", "dropped")) and status != "503"
    )
    print(f"500s and dropped connections: {failures}")
    return 1 if missing or doubled or changed or failures else 0


def print_logged_causes(root: Path) -> None:
    """What the two processes logged about the database, counted by cause."""
    causes: Counter[str] = Counter()
    for log in root.glob("serve*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "database unavailable" in line or "giving up" in line or "Traceback" in line:
                causes[line.split(" - ")[-1][:110]] += 1
    print("\nlogged by the servers:")
    for cause, n in causes.most_common(12):
        print(f"  {n:5d} × {cause}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds each outage lasts")
    parser.add_argument("--calm", type=float, default=4.0, help="seconds between outages")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this directory")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.clients, args.outage, args.calm, args.logs)))
