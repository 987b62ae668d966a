"""The transactions export's rows: text a spreadsheet would run as a formula is written so
that it is read as text, and amounts stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from creditsd.inprocess import Ledger
from creditsd.ledger import export
from creditsd.members import service as members

CREDIT = 10_000


async def test_text_that_starts_like_a_formula_is_exported_as_text(ledger: Ledger) -> None:
    await ledger.grant("ann", 10 * CREDIT, reason='=HYPERLINK("https://evil.example","x")')
    await ledger.charge("ann", CREDIT, description="+1+2", idempotency_key="-2+3")
    await ledger.charge("ann", CREDIT, description="@SUM(A1)", metadata={"n": 1})
    await ledger.charge("ann", CREDIT, description="\tpadded", idempotency_key="@home")
    await ledger.charge("ann", CREDIT, description="\rreturned")
    await ledger.charge("ann", CREDIT, description="a chat - today", idempotency_key="k=1")
    rows = [
        export.row(transfer, ledger.money)
        async for page in ledger.export_transfers(None, None)
        for transfer in page
    ]
    shown = {name: [row[export.COLUMNS.index(name)] for row in rows] for name in export.COLUMNS}
    assert shown["description"] == [
        '\'=HYPERLINK("https://evil.example","x")',
        "'+1+2",
        "'@SUM(A1)",
        "'\tpadded",
        "'\rreturned",
        "a chat - today",
    ]
    keys = shown["idempotency_key"]
    assert (keys[1], keys[3], keys[5]) == ("'-2+3", "'@home", "k=1")
    assert shown["amount"] == [Decimal(10)] + [Decimal(1)] * 5
    assert shown["metadata"][2] == '{"n":1}'

    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    read = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert [row[export.COLUMNS.index("amount")] for row in read] == ["10"] + ["1"] * 5
    assert all(
        not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in read for cell in row
    )


async def test_a_member_s_spend_names_the_member_and_the_rest_leave_it_empty(
    ledger: Ledger,
) -> None:
    await ledger.grant("acme", 10 * CREDIT)
    for member in ("ada", "=cmd"):
        await ledger.database.write(partial(_add_member, ledger=ledger, member=member))
    await ledger.charge("acme", CREDIT, member="ada")
    await ledger.charge("acme", CREDIT, member="=cmd")
    await ledger.charge("acme", CREDIT)
    rows = [
        export.row(transfer, ledger.money)
        async for page in ledger.export_transfers(None, None)
        for transfer in page
    ]
    assert export.COLUMNS[-1] == "member"
    assert [(row[2], row[-1]) for row in rows] == [
        ("grant", ""),
        ("charge", "ada"),
        ("charge", "'=cmd"),
        ("charge", ""),
    ]


async def _add_member(conn: AsyncConnection, now: datetime, *, ledger: Ledger, member: str) -> None:
    await members.put_member(conn, "acme", member, None, None, ledger.policy, now, actor="test")
