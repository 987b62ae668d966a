"""The ``creditsd`` command as an operator types it."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from creditsd.cli import app
from creditsd.kit import db, jsonio
from tests.conftest import postgres_admin_url

PASSWORD = "hunter2-secret"


def run(database_url: str, *args: str, **env: str | None) -> tuple[int, str, str]:
    """Run the command; whatever it does, it never ends in a traceback."""
    runner = CliRunner()
    result = runner.invoke(
        app,
        list(args),
        env={"CREDITSD_DATABASE_URL": database_url, "CREDITSD_CONFIG": os.devnull, **env},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def postgres_url(**parts: Any) -> str:
    """The test PostgreSQL server's URL with some parts replaced (and a password set)."""
    url = make_url(postgres_admin_url()).set(password=PASSWORD, **parts)
    return url.render_as_string(hide_password=False)


def serve(database_url: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """A real ``creditsd serve`` process, its output readable line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "creditsd", "serve", *args],
        env={**os.environ, "CREDITSD_DATABASE_URL": database_url, "CREDITSD_CONFIG": os.devnull},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def execute(database_url: str, sql: str) -> None:
    async def main() -> None:
        engine = db.create_engine(database_url)
        try:
            async with db.transaction(engine) as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(main())


def audit_actions(database_url: str, target: str) -> list[str]:
    from tests.conftest import audit_trail

    async def main() -> list[str]:
        engine = db.create_engine(database_url)
        try:
            async with db.transaction(engine) as conn:
                return [record.action for record in await audit_trail(conn, target)]
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_keys_are_shown_once_and_stored_hashed(database_url: str) -> None:
    code, out, _ = run(database_url, "keys", "create", "--scope", "admin", "--name", "ops")
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("cdk_") and len(secret) > 40
    code, listing, _ = run(database_url, "keys", "list")
    assert code == 0
    assert secret not in listing
    assert f"cdk_…{secret[-4:]}" in listing
    key_id = out.split()[1]
    assert run(database_url, "keys", "revoke", key_id)[0] == 0
    assert audit_actions(database_url, key_id) == ["key.create", "key.revoke"]
    assert run(database_url, "keys", "revoke", "key_nope")[0] == 1
    code, _, _ = run(database_url, "keys", "create", "--scope", "root", "--name", "x")
    assert code == 2


def test_grant_show_reconcile_and_export(database_url: str) -> None:
    code, out, _ = run(database_url, "grant", "user_1", "100", "--reason", "welcome")
    assert code == 0 and "balance 100" in out
    code, out, _ = run(database_url, "grant", "user_2", "2.5", "--reason", "promo")
    assert code == 0
    code, _, err = run(database_url, "grant", "user_2", "0.00001", "--reason", "x")
    assert code == 2 and "decimal places" in err
    code, _, err = run(database_url, "grant", "user 2", "1", "--reason", "x")
    assert code == 1 and "invalid_account_id" in err

    code, out, _ = run(database_url, "accounts", "show", "user_1")
    assert code == 0
    assert "balance" in out and "100" in out
    assert "none (too_little_history)" in out  # its runway: it is not a day old

    code, out, _ = run(database_url, "reconcile")
    assert code == 0 and "every account matches" in out

    execute(database_url, "UPDATE accounts SET balance = balance + 1 WHERE id = 'user_2'")
    code, out, _ = run(database_url, "reconcile")
    assert code == 1
    assert "user_2" in out and "1 account(s) drifted" in out
    code, out, _ = run(database_url, "reconcile", "--fix")
    assert code == 0 and "rebuilt 1" in out
    assert run(database_url, "reconcile")[0] == 0

    code, out, _ = run(database_url, "export", "transactions")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["credit_account_id"], r["amount"], r["description"]) for r in rows] == [
        ("user_1", "100", "welcome"),
        ("user_2", "2.5", "promo"),
    ]
    code, out, _ = run(database_url, "export", "transactions", "--until", "2000-01-01")
    assert code == 0 and len(out.strip().splitlines()) == 1
    code, _, _ = run(database_url, "export", "transactions", "--since", "yesterday")
    assert code == 2


def test_export_to_a_file(database_url: str, tmp_path: object) -> None:
    from pathlib import Path

    target = Path(str(tmp_path)) / "out.csv"
    run(database_url, "grant", "u", "1", "--reason", "x")
    code, out, _ = run(database_url, "export", "transactions", "-o", str(target))
    assert code == 0 and "wrote 1 transfers" in out
    header = target.read_text().splitlines()[0]
    assert header.startswith("id,created_at,kind") and header.endswith(",metadata,member")


def test_a_team_wallet_s_members_and_limits_from_the_command_line(database_url: str) -> None:
    assert run(database_url, "grant", "org:acme", "1000", "--reason", "budget")[0] == 0
    limits = ("--limit", "100/day", "--limit", "300/month/soft")
    code, out, _ = run(database_url, "members", "put", "org:acme", "ada", "--name", "Ada", *limits)
    assert code == 0 and "added ada of org:acme" in out
    assert "100" in out and "soft" in out
    assert run(database_url, "members", "put", "org:acme", "grace")[0] == 0
    code, out, _ = run(database_url, "members", "put", "org:acme", "ada", "--limit", "50/day")
    assert code == 0 and "updated ada of org:acme" in out

    def listed() -> dict[str, list[tuple[str, str, Any]]]:
        code, out, err = run(database_url, "members", "list", "org:acme", "--json")
        assert code == 0, err
        return {
            member["member_id"]: [(x["period"], x["mode"], x["amount"]) for x in member["limits"]]
            for member in map(jsonio.loads, out.splitlines())
        }

    assert listed() == {"ada": [("day", "hard", 50)], "grace": []}
    code, out, _ = run(database_url, "members", "list", "org:acme")
    assert code == 0 and "Ada" in out and "grace" in out
    assert run(database_url, "members", "put", "org:acme", "ada", "--no-limits")[0] == 0
    assert listed() == {"ada": [], "grace": []}

    code, out, _ = run(database_url, "limits", "set", "org:acme", "--limit", "500/month")
    assert code == 0 and "wallet" in out and "500" in out
    code, _, _ = run(database_url, "limits", "set", "org:acme", "--app", "chat", "--limit", "5/day")
    assert code == 0
    code, out, _ = run(database_url, "limits", "show", "org:acme", "--json")
    shown = [jsonio.loads(line) for line in out.splitlines()]
    assert [(x["scope"], x["subject"], x["period"], x["amount"]) for x in shown] == [
        ("wallet", None, "month", 500),
        ("app", "chat", "day", 5),
    ]
    assert run(database_url, "limits", "set", "org:acme", "--app", "chat", "--none")[0] == 0
    code, out, _ = run(database_url, "limits", "show", "org:acme")
    assert code == 0 and "chat" not in out and "500" in out

    code, out, _ = run(database_url, "members", "remove", "org:acme", "grace")
    assert code == 0 and "removed grace from org:acme" in out
    code, _, err = run(database_url, "members", "remove", "org:acme", "grace")
    assert code == 1 and "member_not_found" in err
    assert audit_actions(database_url, "org:acme/ada") == ["member.added"]
    assert audit_actions(database_url, "org:acme/member/ada") == ["limits.set"] * 3
    assert audit_actions(database_url, "org:acme/grace") == ["member.added", "member.removed"]


@pytest.mark.parametrize(
    ("command", "code", "said"),
    [
        (["members", "put", "org:acme", "ada", "--limit", "100"], 2, "AMOUNT/PERIOD"),
        (["members", "put", "org:acme", "ada", "--limit", "9/fortnight"], 2, "period must be"),
        (["members", "put", "org:acme", "ada", "--limit", "9/day/loud"], 2, "mode must be"),
        (["members", "put", "org:acme", "ada", "--limit", "abc/day"], 2, "decimal number"),
        (["members", "put", "org:acme", "ada", "--limit", "-5/day"], 2, "negative"),
        (["members", "put", "org:acme", "ada", "--limit", "1/day", "--no-limits"], 2, "not both"),
        (["members", "put", "org:acme", "a b"], 2, "invalid member id"),
        (["members", "put", "org:acme", "ada", "--name", ""], 2, "invalid --name"),
        (["members", "put", "org:acme", "a", "--limit", "9/day", "--limit", "5/week"], 1, "nested"),
        (["members", "list", "nobody"], 1, "account_not_found"),
        (["limits", "set", "org:acme"], 2, "--none"),
        (["limits", "set", "org:acme", "--app", "a b", "--limit", "1/day"], 2, "invalid --app"),
        (["limits", "show", "nobody"], 1, "account_not_found"),
    ],
)
def test_a_bad_member_or_limit_is_named(
    database_url: str, command: list[str], code: int, said: str
) -> None:
    assert run(database_url, "grant", "org:acme", "10", "--reason", "budget")[0] == 0
    exit_code, _, err = run(database_url, *command)
    assert (exit_code, said in err) == (code, True), err
    assert "Traceback" not in err
    assert run(database_url, "members", "list", "org:acme", "--json")[1] == ""  # nothing made
    assert run(database_url, "limits", "show", "org:acme", "--json")[1] == ""


def test_an_unmigrated_database_says_what_to_run(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    code, _, err = run(url, "accounts", "show", "u")
    assert code == 2 and "creditsd migrate" in err
    assert run(url, "migrate")[0] == 0
    assert run(url, "accounts", "show", "u")[0] == 0


def test_an_unreachable_database_is_a_clear_error() -> None:
    code, _, err = run("postgresql://nobody@127.0.0.1:1/none", "accounts", "show", "u")
    assert code == 1 and "database" in err


def test_webhooks_retry_queues_deliveries_again(database_url: str) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    execute(
        database_url,
        "INSERT INTO outbox (destination, message_id, event_type, account_id, payload, status,"
        f" attempts, next_attempt_at, created_at) VALUES ('we_x', 'msg_1', 'balance.low', 'u',"
        f" '{{}}', 'dead', 9, '{now}', '{now}')",
    )
    code, out, _ = run(database_url, "webhooks", "retry", "1")
    assert code == 0
    assert "balance.low" in out and "queued again" in out
    code, _, err = run(database_url, "webhooks", "retry", "2")
    assert code == 1
    assert "delivery_not_found" in err
    assert audit_actions(database_url, "1") == ["webhook_delivery.retry"]


def test_the_version_and_keys_as_json(database_url: str) -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    code, out, _ = run(database_url, "--version")
    assert (code, out.strip()) == (0, f"creditsd {pyproject['project']['version']}")
    code, out, _ = run(database_url, "keys", "create", "--scope", "read", "--name", "dash")
    secret = out.strip().splitlines()[-1]
    code, listing, _ = run(database_url, "keys", "list", "--json")
    assert code == 0
    (key,) = [jsonio.loads(line) for line in listing.splitlines()]
    assert (key["name"], key["scope"], key["revoked_at"]) == ("dash", "read", None)
    assert key["id"].startswith("key_") and secret not in listing


def test_audit_shows_what_was_done_newest_first(database_url: str) -> None:
    assert run(database_url, "grant", "user_1", "100", "--reason", "welcome")[0] == 0
    assert run(database_url, "grant", "user_2", "5", "--reason", "promo")[0] == 0
    code, out, _ = run(database_url, "keys", "create", "--scope", "read", "--name", "dash")
    key_id = out.split()[1]

    code, out, _ = run(database_url, "audit", "--json")
    assert code == 0
    records = [jsonio.loads(line) for line in out.splitlines()]
    assert [(r["action"], r["target"]) for r in records] == [
        ("key.create", key_id),
        ("grant", "user_2"),
        ("grant", "user_1"),
    ]
    assert records[2]["actor"].startswith("cli")
    assert records[2]["after"]["balance"] == 100  # in credits, as the API shows it
    assert records[0]["before"] is None and records[0]["created_at"].endswith("Z")
    assert records[0]["id"] > records[1]["id"] > records[2]["id"]

    code, table, _ = run(database_url, "audit")
    assert code == 0
    assert all(word in table for word in ("key.create", "grant", "user_1", "balance"))

    def listed(*options: str) -> list[str]:
        code, out, err = run(database_url, "audit", "--json", *options)
        assert code == 0, err
        return [jsonio.loads(line)["target"] for line in out.splitlines()]

    assert listed("--target", "user_1") == ["user_1"]
    assert listed("--action", "grant", "--limit", "1") == ["user_2"]
    assert listed("--actor", records[2]["actor"], "--action", "grant") == ["user_2", "user_1"]
    assert listed("--actor", "key:nobody") == []
    assert listed("--until", "2000-01-01") == []
    assert listed("--since", "2000-01-01", "--action", "grant") == ["user_2", "user_1"]

    code, _, err = run(database_url, "audit", "--limit", "0")
    assert code == 2
    code, _, err = run(database_url, "audit", "--since", "yesterday")
    assert code == 2 and "--since" in err
    code, _, err = run(database_url, "audit", "--since", "2026-12-01", "--until", "2026-11-01")
    assert code == 1 and "since must be earlier than until" in err


def test_audit_pages_past_a_hundred_records(database_url: str) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat()
    rows = ", ".join(f"('cli:x', 'grant', 'u{n}', '{now}')" for n in range(130))
    execute(
        database_url, f"INSERT INTO audit_log (actor, action, target, created_at) VALUES {rows}"
    )
    code, out, _ = run(database_url, "audit", "--json", "--limit", "120")
    assert code == 0
    targets = [jsonio.loads(line)["target"] for line in out.splitlines()]
    assert targets == [f"u{n}" for n in range(129, 9, -1)]
    assert len(run(database_url, "audit", "--json", "--limit", "500")[1].splitlines()) == 130


def test_keys_with_an_expiry(database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    code, out, err = run(
        database_url, "keys", "create", "--scope", "app", "--name", "ci", "--expires-in", "30d"
    )
    assert code == 0, err
    assert "expires" in out and out.strip().splitlines()[-1].startswith("cdk_")
    key_id = out.split()[1]
    run(database_url, "keys", "create", "--scope", "read", "--name", "forever")
    code, listing, _ = run(database_url, "keys", "list", "--json")
    expiring, forever = [jsonio.loads(line) for line in listing.splitlines()]
    assert expiring["id"] == key_id and forever["expires_at"] is None
    expires_at = datetime.fromisoformat(expiring["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    code, table, _ = run(database_url, "keys", "list")
    assert code == 0 and "expires" in table and expires_at.strftime("%Y-%m-%d") in table

    execute(database_url, f"UPDATE api_keys SET expires_at = created_at WHERE id = '{key_id}'")
    code, table, _ = run(database_url, "keys", "list")
    assert "expired" in table

    for wrong in ("30", "1.5d", "-1d", "1w", "9999999999d"):
        code, _, err = run(
            database_url, "keys", "create", "--scope", "app", "--name", "x", "--expires-in", wrong
        )
        assert code == 2, wrong
        assert "--expires-in" in err and "12h or 30d" in err
    for out_of_bounds in ("0d", "0h", "3651d"):
        code, _, err = run(
            database_url,
            "keys",
            "create",
            "--scope",
            "app",
            "--name",
            "x",
            "--expires-in",
            out_of_bounds,
        )
        assert code == 2, out_of_bounds
        assert "--expires-in" in err
    assert len(run(database_url, "keys", "list", "--json")[1].splitlines()) == 2


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            f"mysql://u:{PASSWORD}@h/db",
            "unsupported database 'mysql': use sqlite:/// or postgresql://",
        ),
        ("garbage", "is not a database URL"),
        ("sqlite://x.db", "sqlite:///"),
        (f"postgresql://u:{PASSWORD}@h:port/db", "is not a database URL"),
    ],
)
def test_a_database_url_that_cannot_work_is_named(url: str, says: str) -> None:
    code, _, err = run(url, "accounts", "show", "u")
    assert code == 2
    assert "CREDITSD_DATABASE_URL" in err and says in err
    assert PASSWORD not in err


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            postgres_url(database="creditsd_no_such_database"),
            'database "creditsd_no_such_database" does not exist',
        ),
        (
            postgres_url(username="creditsd_no_such_role"),
            'role "creditsd_no_such_role" does not exist',
        ),
        (postgres_url(host="127.0.0.1", port=1), "Connection refused"),
    ],
)
def test_a_database_that_cannot_be_used_is_named(url: str, says: str) -> None:
    started = time.monotonic()
    code, _, err = run(url, "accounts", "show", "u")
    assert time.monotonic() - started < 10
    assert code == 1
    assert "cannot use the database" in err and says in err
    assert PASSWORD not in err and f"@{make_url(url).host}" in err  # which database, not its secret


def test_a_sqlite_file_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    code, _, err = run(f"sqlite:///{missing}/x.db", "migrate")
    assert code == 1
    assert "cannot use the database" in err and "No such file or directory" in err
    assert str(missing) in err
    assert not missing.exists()


UNREACHABLE = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["serve", "--port", "0"],
        ["worker"],
        ["keys", "create", "--scope", "read", "--name", "x"],
        ["keys", "list"],
        ["keys", "revoke", "key_x"],
        ["accounts", "show", "u"],
        ["auto-topup", "show", "u"],
        ["grant", "u", "1", "--reason", "x"],
        ["reconcile"],
        ["verify"],
        ["export", "transactions"],
        ["pricing", "show"],
        ["stripe", "reconcile"],
        ["webhooks", "retry", "1"],
    ],
)
def test_every_command_names_an_unreachable_database(command: list[str]) -> None:
    code, out, err = run(UNREACHABLE, *command)
    assert code == 1
    assert "cannot use the database postgresql://u:***@127.0.0.1:1/db: Connection refused" in err
    assert "listening" not in out


def test_an_unwritable_export_file_is_named_and_the_database_untouched(tmp_path: Path) -> None:
    database = tmp_path / "never.db"
    target = tmp_path / "missing" / "x.csv"
    code, _, err = run(f"sqlite:///{database}", "export", "transactions", "-o", str(target))
    assert code == 1
    assert f"cannot write {target}: No such file or directory" in err
    assert "database" not in err
    assert not database.exists()


def test_a_failed_export_leaves_no_file_behind(tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    code, _, err = run(UNREACHABLE, "export", "transactions", "-o", str(target))
    assert code == 1 and "cannot use the database" in err
    assert not target.exists()


def test_an_export_read_by_a_reader_that_stops_ends_quietly(database_url: str) -> None:
    run(database_url, "grant", "u", "1", "--reason", "x")
    process = subprocess.Popen(
        [sys.executable, "-m", "creditsd", "export", "transactions"],
        env={**os.environ, "CREDITSD_DATABASE_URL": database_url, "CREDITSD_CONFIG": os.devnull},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `creditsd export transactions | head -0` would
    with process.stderr:
        assert process.stderr.read() == ""
    assert process.wait(timeout=60) == 1


def test_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(f"sqlite:///{tmp_path}/x.db", tmp_path, "--port", str(port))
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in err
    assert "listening" not in out and "Traceback" not in err
    assert not (tmp_path / "x.db").exists()  # refused before the database is opened


def test_serve_says_listening_once_it_listens_and_stops_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    process = serve(database_url, tmp_path, "--port", "0")
    try:
        assert process.stdout is not None
        lines = iter(process.stdout.readline, "")
        announced = next(line for line in lines if line.startswith("listening on http://"))
        address = announced.split()[2].removeprefix("http://")
        host, port = address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = process.communicate(timeout=30)
    assert "Traceback" not in err and "Exception" not in err


@pytest.mark.parametrize(
    "command",
    [["serve", "--port", "70000"], ["webhooks", "retry", "99999999999999999999"]],
)
def test_an_option_out_of_range_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    code, _, err = run(f"sqlite:///{tmp_path}/x.db", *command)
    assert code == 2
    assert "Invalid value" in err and "less than or equal to" in err


@pytest.mark.parametrize("config", [os.devnull, None])
def test_a_bad_environment_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str | None
) -> None:
    monkeypatch.chdir(tmp_path)  # no creditsd.toml here
    code, _, err = run(
        f"sqlite:///{tmp_path}/x.db",
        "keys",
        "list",
        CREDITSD_SERVER__PORT="abc",
        CREDITSD_CONFIG=config,
    )
    assert code == 2
    assert "server.port (from CREDITSD_SERVER__PORT)" in err
    assert "toml" not in err and os.devnull not in err


def _every_command() -> list[list[str]]:
    """Every command line that has a help page: the top, each group and each command."""
    import typer

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("command", _every_command(), ids=" ".join)
def test_every_help_page_renders_as_written(tmp_path: Path, command: list[str]) -> None:
    code, out, _ = run(f"sqlite:///{tmp_path}/x.db", *command, "--help", COLUMNS="80")
    assert code == 0
    assert not [char for char in out if ord(char) >= 0x2600 and char not in "─│╭╮╰╯…"], out
    assert "<bool>" not in out and "{" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    if command == ["audit"]:
        assert "key:ID:NAME" in out


def _lines(out: str) -> list[str]:
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    return lines


def test_tables_fit_80_columns_with_ids_shortened(database_url: str) -> None:
    account = "user_2NNEqL2nrIRdJ194ndJqAHwEfxC"  # a Clerk user id
    assert run(database_url, "grant", account, "100", "--reason", "welcome")[0] == 0
    key_ids = []
    for name in ("dashboard", "nightly-export"):
        code, out, _ = run(database_url, "keys", "create", "--scope", "read", "--name", name)
        key_ids.append(out.split()[1])
    short = [f"{key_id[:8]}…{key_id[-6:]}" for key_id in key_ids]

    code, out, _ = run(database_url, "keys", "list", COLUMNS="80")
    lines = _lines(out)
    assert code == 0 and all(any(s in line for line in lines) for s in short), out
    code, out, _ = run(database_url, "keys", "list", "--wide", COLUMNS="80")
    assert code == 0 and all(any(k in line for line in out.splitlines()) for k in key_ids), out

    code, out, _ = run(database_url, "audit", COLUMNS="80")
    lines = _lines(out)
    assert any("user_2NN…HwEfxC" in line for line in lines), out
    assert all(any(s in line for line in lines) for s in short), out
    code, out, _ = run(database_url, "audit", "--wide", COLUMNS="80")
    assert code == 0 and any(account in line for line in out.splitlines()), out

    execute(database_url, f"UPDATE accounts SET balance = balance + 1 WHERE id = '{account}'")
    code, out, _ = run(database_url, "reconcile", COLUMNS="80")
    assert code == 1 and any("user_2NN…HwEfxC" in line for line in _lines(out)), out
    code, out, _ = run(database_url, "reconcile", "--wide", COLUMNS="80")
    assert code == 1 and any(account in line for line in out.splitlines()), out

    code, out, _ = run(database_url, "accounts", "show", account, COLUMNS="80")
    assert code == 0 and any(account in line for line in _lines(out)), out


def test_help_loads_neither_the_server_nor_the_database() -> None:
    heavy = ("sqlalchemy", "fastapi", "uvicorn", "starlette", "pydantic", "stripe", "asyncpg")
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from creditsd.cli import main\n"
            "sys.argv = ['creditsd', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(*sorted(sys.modules), file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = shown.stderr.split()
    assert "typer" in loaded
    assert [name for name in loaded if name.split(".")[0] in heavy] == []
