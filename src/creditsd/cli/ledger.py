"""The ledger's checks and records: reconcile, verify, the audit log and the export."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from creditsd.cli.apps import app, export_app
from creditsd.cli.common import (
    RUNTIME_FAILURE,
    WIDE,
    Command,
    cli_actor,
    err,
    instant,
    moment_text,
    out,
    print_table,
    table_moment,
    with_ledger,
)

if TYPE_CHECKING:  # the server's modules load inside the commands, so that --help is quick
    from sqlalchemy.ext.asyncio import AsyncConnection

    from creditsd.audit.models import AuditFilter, AuditRecord
    from creditsd.inprocess import Ledger
    from creditsd.kit.pagination import Page
    from creditsd.ledger.models import Verification


@app.command(cls=Command)
def reconcile(
    fix: Annotated[
        bool, typer.Option("--fix", help="Rebuild drifted balances from the transfers (audited).")
    ] = False,
    wide: WIDE = False,
) -> None:
    """Verify every account against its transfers; exit 1 if any drifted and was not fixed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    async def work(ledger: Ledger) -> list[Verification]:
        drifted: list[Verification] = []
        total = await ledger.count_accounts()
        with Progress(
            TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), console=err
        ) as progress:
            task = progress.add_task("accounts", total=total)
            async for page in ledger.verify_all():
                drifted.extend(v for v in page if not v.valid)
                progress.advance(task, len(page))
        if fix:
            for verification in drifted:
                await ledger.rebuild_account(verification.account_id, actor=cli_actor())
        if (sum_of_all := await ledger.ledger_total()) != 0:
            err.print(f"[red]the ledger does not sum to zero:[/red] {sum_of_all} minor units")
        return drifted

    drifted = with_ledger(work)
    if not drifted:
        out.print("every account matches its transfers")
        return
    print_table(
        ("account", "stored", "calculated", "stored held", "calculated held"),
        [
            (
                v.account_id,
                str(v.stored_balance),
                str(v.calculated_balance),
                str(v.stored_held),
                str(v.calculated_held),
            )
            for v in drifted
        ],
        ids={"account"},
        wide=wide,
    )
    if fix:
        out.print(f"rebuilt {len(drifted)} account(s) from their transfers (minor units shown)")
        return
    out.print(f"{len(drifted)} account(s) drifted; run with --fix to rebuild them")
    raise typer.Exit(RUNTIME_FAILURE)


@app.command(cls=Command)
def verify() -> None:
    """Re-derive the checkpoint chain from the stored transfers; exit 1 naming the first
    transfer whose stored row no longer matches its checkpoint."""

    from creditsd.worker import verify_chain

    report = with_ledger(verify_chain)
    if report.broken is not None:
        out.print(f"[red]the checkpoint chain is broken:[/red] {report.broken.detail}")
        raise typer.Exit(RUNTIME_FAILURE)
    if report.head is None:
        out.print("no checkpoint yet: reconciliation writes one each run")
        return
    out.print(
        f"the checkpoint chain is whole: {report.head.number} checkpoint(s) over "
        f"{report.transfers} transfer(s) created before {moment_text(report.head.until)}; "
        f"head {report.head.digest}"
    )


AUDIT_FIELDS = ("id", "created_at", "actor", "action", "target", "before", "after")


@app.command(cls=Command)
def audit(
    target: Annotated[
        str | None, typer.Option(help="Only records about this (an account id, a key id, …).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Only records by this actor (key:ID:NAME, cli:USER, …).")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action (grant, account.frozen, key.create, …).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this UTC date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this UTC date/time, exclusive.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per record, for scripts.")
    ] = False,
    wide: WIDE = False,
) -> None:
    """Show the audit log, newest first: who did what to which target, and the state
    before and after as recorded (amounts in credits)."""
    from creditsd.audit.models import AuditFilter
    from creditsd.kit import jsonio

    wanted = AuditFilter(
        target=target,
        actor=actor,
        action=action,
        since=instant(since, "--since"),
        until=instant(until, "--until"),
    )
    records = with_ledger(partial(_audit_records, wanted=wanted, limit=limit))
    if as_json:
        for record in records:
            print(jsonio.dumps({field: getattr(record, field) for field in AUDIT_FIELDS}))
        return
    _print_audit_table(records, wide)


async def _audit_records(ledger: Ledger, *, wanted: AuditFilter, limit: int) -> list[AuditRecord]:
    """The newest ``limit`` records ``wanted``, a page at a time, amounts in credits."""
    from creditsd.audit import service as audit_service
    from creditsd.kit.pagination import MAX_LIMIT

    async def _records(
        conn: AsyncConnection, _now: datetime, limit: int, cursor: str | None
    ) -> Page[AuditRecord]:
        return await audit_service.list_records(conn, wanted=wanted, limit=limit, cursor=cursor)

    found: list[AuditRecord] = []
    cursor: str | None = None
    while len(found) < limit:
        page = await ledger.database.read(
            partial(_records, limit=min(limit - len(found), MAX_LIMIT), cursor=cursor)
        )
        found += [record.in_credits(ledger.money) for record in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found


def _print_audit_table(records: list[AuditRecord], wide: bool) -> None:
    from creditsd.kit import jsonio

    print_table(
        AUDIT_FIELDS,
        [
            (
                str(record.id),
                table_moment(record.created_at, wide),
                record.actor,
                record.action,
                record.target,
                "" if record.before is None else jsonio.dumps(record.before),
                "" if record.after is None else jsonio.dumps(record.after),
            )
            for record in records
        ],
        ids={"actor", "target"},
        whole={"created_at", "action"},
        wide=wide,
    )


@export_app.command("transactions", cls=Command)
def export_transactions(
    since: Annotated[str | None, typer.Option(help="From this UTC date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this UTC date/time, exclusive.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write transfers as CSV (amounts in credits), oldest first."""
    from creditsd.ledger import export

    start, end = instant(since, "--since"), instant(until, "--until")

    async def work(ledger: Ledger, stream: TextIO) -> int:
        writer = csv.writer(stream)
        writer.writerow(export.COLUMNS)
        count = 0
        async for page in ledger.export_transfers(start, end):
            writer.writerows(export.row(transfer, ledger.money) for transfer in page)
            count += len(page)
        return count

    with _output_file(output) if output else nullcontext(sys.stdout) as stream:
        count = with_ledger(partial(work, stream=stream))
    if output:
        out.print(f"wrote {count} transfers to {output}")


@contextmanager
def _output_file(path: Path) -> Iterator[TextIO]:
    """``path`` opened for writing before the database is, so that an unwritable one is
    named at once; removed if the command then fails, so that no partial file is left."""
    try:
        stream = path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]cannot write {path}:[/red] {exc.strerror}")
        raise typer.Exit(RUNTIME_FAILURE) from None
    with stream:
        try:
            yield stream
        except BaseException:
            path.unlink(missing_ok=True)
            raise
