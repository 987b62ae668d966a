"""Running creditsd: the HTTP API, the worker, migrations, and a stand-in model provider."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from creditsd.cli.apps import app
from creditsd.cli.common import (
    RUNTIME_FAILURE,
    Command,
    err,
    exit_on_error,
    failure_reason,
    finish_closing,
    load_config,
    out,
    safe_url,
    version_text,
    with_ledger,
)

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    import uvicorn

    from creditsd.config import Settings
    from creditsd.inprocess import Ledger


@app.command(cls=Command)
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")
    ] = None,
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not migrate the database on start.")
    ] = False,
) -> None:
    """Run the HTTP API (migrating the database first unless --no-migrate)."""
    import asyncio

    import uvicorn

    from creditsd.api.serving import open_files_allowed, quiet_loop_errors
    from creditsd.inprocess import Ledger
    from creditsd.keys import service as keys

    class Server(uvicorn.Server):
        """uvicorn's server, announcing itself once it accepts connections."""

        def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
            super().__init__(config)
            self.announce = announce

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.announce()

    settings = load_config()
    bind_host = host or settings.server.host

    async def main(sock: socket.socket) -> None:
        _show_logs()
        ledger = await Ledger.connect(settings, migrate=not no_migrate, publish_pricing=True)
        _reload_pricing_on_sighup(ledger)
        try:
            has_keys = bool(await ledger.database.read(lambda conn, _now: keys.list_keys(conn)))
            quiet_loop_errors(asyncio.get_running_loop())
            connections = open_files_allowed(settings.server.max_connections)

            announce = partial(_announce, settings, bind_host, sock, has_keys, connections)
            config = _uvicorn_config(ledger, connections)
            await Server(config, announce).serve(sockets=[sock])
        finally:
            await finish_closing(ledger.close())

    with _bind(bind_host, settings.server.port if port is None else port) as sock:
        exit_on_error(main(sock), settings.database.url)


def _announce(
    settings: Settings, host: str, sock: socket.socket, has_keys: bool, connections: int
) -> None:
    """What ``serve`` says once it accepts connections: where, and what may be missing."""
    out.print(f"creditsd {version_text()} on {safe_url(settings.database.url)}")
    address = f"{host}:{sock.getsockname()[1]}"
    out.print(f"listening on http://{address}  (docs at /docs, console at /admin)")
    if not has_keys:
        out.print(
            "no API keys yet; create an admin key with:\n"
            f"  {typed_command()} keys create --scope admin --name admin"
        )
    if connections < settings.server.max_connections:
        out.print(f"at most {connections} connections: the descriptor limit allows no more")


def _uvicorn_config(ledger: Ledger, connections: int) -> uvicorn.Config:
    """uvicorn serving the API over ``ledger``, at most ``connections`` at once."""
    import uvicorn

    from creditsd.api.app import create_app
    from creditsd.api.serving import guarded

    server = ledger.settings.server
    return uvicorn.Config(
        create_app(ledger, access_log=sys.stdout),
        log_level="info",
        access_log=False,  # ours instead: one JSON line per request (api/observe.py)
        timeout_keep_alive=server.keep_alive_timeout,
        lifespan="on",
        # httptools' parser (under Guarded), not h11: 110-220 µs less CPU per
        # request, a third of /healthz. uvloop saved nothing more and lengthened p99
        # (bench/http/README.md).
        http=guarded(server.request_timeout, connections),
    )


def _bind(host: str, port: int) -> socket.socket:
    """The socket ``serve`` listens on, bound before the database is opened so that a port
    in use is the first thing reported; uvicorn listens on it once the app has started."""
    # Named IPPROTO_TCP, asyncio sets TCP_NODELAY on each accepted connection (it checks the
    # protocol); without it, a response's body waits ~40 ms for the ACK of its head.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            err.print(f"[red]port {port} on {host} is in use:[/red] choose another with --port")
        else:
            err.print(f"[red]cannot listen on {host}:{port}:[/red] {failure_reason(exc)}")
        raise typer.Exit(RUNTIME_FAILURE) from None
    return sock


def _show_logs() -> None:
    """creditsd's own log lines (a publish, a failed delivery, an outage) from INFO up on
    standard error, for the long-running commands; the access log goes to standard output."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("creditsd")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _reload_pricing_on_sighup(ledger: Ledger) -> None:
    """SIGHUP re-reads the configuration file and publishes its catalog; a bad file is
    reported and the current catalog keeps serving."""
    import asyncio

    from creditsd.config import ConfigError, load_settings

    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            pricing = load_settings().configured_pricing
        except ConfigError as exc:
            err.print(f"[red]pricing not reloaded:[/red] {exc}")
            return
        if pricing is None:
            err.print("[red]pricing not reloaded:[/red] the configuration has no \\[pricing]")
            return
        catalog, created = await ledger.publish_pricing(pricing, actor="sighup")
        out.print(f"pricing: catalog v{catalog.version}{' published' if created else ' unchanged'}")

    def on_hangup() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with suppress(NotImplementedError):  # platforms without signals in the event loop
        loop.add_signal_handler(signal.SIGHUP, on_hangup)


def typed_command() -> str:
    """How this command was typed (``.venv/bin/creditsd``), so hints can be pasted as shown."""
    typed = sys.argv[0]
    return typed if Path(typed).name == "creditsd" else "creditsd"


@app.command(cls=Command)
def migrate() -> None:
    """Bring the database schema up to date."""
    from creditsd import migrations

    settings = load_config()

    exit_on_error(migrations.migrate(settings.database), settings.database.url)
    out.print(f"migrated {safe_url(settings.database.url)}")


@app.command(cls=Command)
def worker() -> None:
    """Run the expiry sweeps, the outbox delivery and scheduled reconciliation without the
    API (a separate deployment); as many workers as you like may run at once."""
    from creditsd.worker import background

    out.print("delivering the outbox, sweeping expiries and reconciling; Ctrl-C to stop")
    _show_logs()
    with suppress(KeyboardInterrupt):
        with_ledger(background)


@app.command("dev-upstream", cls=Command)
def dev_upstream(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")
    ] = 9100,
) -> None:
    """Run a local stand-in model provider (OpenAI's wire format, no key) for the proxy."""
    import asyncio

    import uvicorn

    from creditsd.proxy.devupstream import create_app as create_upstream

    with _bind(host, port) as sock:
        url = f"http://{host}:{sock.getsockname()[1]}/v1"
        out.print(f"a stand-in model provider on {url}; point the proxy at it with")
        out.print(f"  CREDITSD_PROXY__BASE_URL={url} creditsd serve")
        server = uvicorn.Server(uvicorn.Config(create_upstream(), log_level="warning"))
        asyncio.run(server.serve(sockets=[sock]))
