"""The layer map of ``creditsd.layers`` holds: no import points up, and only entry points
open transactions. Every import counts, type-only and lazy ones included; every broken
rule is reported with the file and line that break it."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from creditsd.layers import LAYERS, RULES, SDK, Layer, Rule, layer_of

ROOT = Path(__file__).parents[1]
SOURCE = ROOT / "src" / "creditsd"
SDK_SOURCE = ROOT / "clients" / "python" / "src" / "creditsd" / "client"


def imports(path: Path, package: str = "") -> list[tuple[str, int]]:
    """The ``creditsd`` modules a file of ``package`` imports anywhere (at its top, under
    ``TYPE_CHECKING``, inside functions, relatively), with their line numbers."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, (base, node.module)))
            found += [(_module(f"{module}.{alias.name}"), node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(_module(alias.name), node.lineno) for alias in node.names]
    ours = [(name, line) for name, line in found if name.split(".")[0] == "creditsd"]
    return list(dict.fromkeys(ours))


def _module(name: str) -> str:
    """The module an imported name lives in (``creditsd.ledger.posting.Posting`` →
    ``creditsd.ledger.posting``)."""
    parts = name.split(".")
    while len(parts) > 1 and not _is_module(".".join(parts)):
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _modules(root: Path) -> list[tuple[str, Path]]:
    """Every module under ``root`` (a folder of the ``creditsd`` namespace) with its file;
    migrations' versions are frozen history and left out."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        if not module.startswith("creditsd.migrations.versions"):
            found.append((module, path))
    return found


def _package(module: str, path: Path) -> str:
    """The package a module's relative imports start from."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


SERVER = _modules(SOURCE)


def broken(rule: Rule) -> list[str]:
    """Every import of the server that is ``rule``'s arrow, as ``file:line importer → imported``."""
    return [
        f"{path.relative_to(SOURCE.parent)}:{line} {module} → {imported}"
        for module, path in SERVER
        for imported, line in imports(path, _package(module, path))
        if rule.forbids(module, imported)
    ]


def test_every_module_is_on_the_map() -> None:
    unplaced = []
    for module, _ in SERVER:
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"modules the layer map does not place: {unplaced}"
    assert all(_is_module(name) for name in LAYERS), "the map names a module that is gone"


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_no_import_breaks_the_rule(rule: Rule) -> None:
    offenders = broken(rule)
    assert not offenders, f"{rule.name}:\n" + "\n".join(offenders)


def test_no_two_modules_import_each_other() -> None:
    imported = {
        module: {name for name, _ in imports(path, _package(module, path))}
        for module, path in SERVER
    }
    pairs = sorted(
        f"{module} ⇄ {other}"
        for module, names in imported.items()
        for other in names
        if module < other and module in imported.get(other, set())
    )
    assert not pairs, "modules that import each other:\n" + "\n".join(pairs)


def test_the_sdk_imports_nothing_of_the_server() -> None:
    offenders = [
        f"{path.relative_to(SDK_SOURCE.parent)}:{line} {module} → {imported}"
        for module, path in _modules(SDK_SOURCE)
        for imported, line in imports(path, _package(module, path))
        if not imported.startswith(SDK)
    ]
    assert not offenders, "the SDK imports the server:\n" + "\n".join(offenders)


def test_the_map_places_by_folder_not_by_file_name() -> None:
    assert layer_of("creditsd.ledger.posting") == Layer.LEDGER
    assert layer_of("creditsd.api.schemas.ledger") == Layer.SURFACE
    assert layer_of("creditsd.stripe.repository") == Layer.SERVICE
    assert layer_of("creditsd.proxy.service") == Layer.SURFACE
    assert layer_of("creditsd.kit.db") == Layer.KIT
    with pytest.raises(KeyError):
        layer_of("creditsd.unplaced")


def test_the_check_reads_type_only_lazy_and_relative_imports(tmp_path: Path) -> None:
    service = tmp_path / "service.py"
    service.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from creditsd.inprocess import Ledger\n"
        "def f():\n"
        "    import creditsd.api.auth\n"
        "    from creditsd.ledger import posting\n"
        "    from . import errors\n"
        "    from ..kit import money\n"
    )
    assert imports(service, "creditsd.stripe") == [
        ("creditsd.inprocess", 3),
        ("creditsd.api.auth", 5),
        ("creditsd.ledger.posting", 6),
        ("creditsd.stripe.errors", 7),
        ("creditsd.kit.money", 8),
    ]
    (rule,) = [rule for rule in RULES if rule.name == "a service imports the in-process Ledger"]
    assert rule.forbids("creditsd.stripe.service", "creditsd.inprocess")
    assert not rule.forbids("creditsd.stripe.service", "creditsd.api.auth")
    assert not rule.forbids("creditsd.api.auth", "creditsd.inprocess")


# One doorway into a transaction: ``creditsd.kit.db.Database``, over its SQLite driver;
# the migrations, run before any work, have their own. Entry points (the surfaces, and
# group commit, which opens the one transaction a batch of concurrent requests shares)
# hand it their work; services are handed a connection and never open one.
_DOORWAY = ("creditsd.kit.db", "creditsd.kit.sqlite", "creditsd.migrations")
_ENTRY_POINTS_BELOW_THE_SURFACES = {"creditsd.ledger.batching"}
_CONNECTION_CALLS = {"connect", "begin", "begin_nested", "commit", "rollback"}


def transaction_calls(path: Path, *, doorway: bool = True) -> list[str]:
    """Where a file opens a transaction, as ``line call``: through the doorway
    (``database.write(…)``, ``database.read(…)``; left out unless ``doorway``) or past it
    (``db.run(…)``, ``engine.connect()``, ``conn.commit()`` and the like; a class's
    ``connect``, such as ``Ledger.connect``, opens no transaction)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        called, on = node.func.attr, ast.unparse(node.func.value)
        through = called in {"write", "read"} and on.split(".")[-1] in {"database", "_database"}
        past = (on == "db" and called in {"run", "transaction"}) or (
            called in _CONNECTION_CALLS and not on[0].isupper()
        )
        if (through and doorway) or past:
            found.append(f"{node.lineno} {ast.unparse(node.func)}")
    return found


def test_the_check_for_transactions_finds_them(tmp_path: Path) -> None:
    service = tmp_path / "service.py"
    service.write_text(
        "async def f(engine, ledger):\n"
        "    await db.run(engine, work)\n"
        "    await ledger.database.write(work)\n"
        "    async with engine.connect() as conn:\n"
        "        await conn.commit()\n"
        "    await outbox.write(message)\n"
    )
    assert transaction_calls(service) == [
        "2 db.run",
        "3 ledger.database.write",
        "4 engine.connect",
        "5 conn.commit",
    ]
    assert transaction_calls(service, doorway=False) == [
        "2 db.run",
        "4 engine.connect",
        "5 conn.commit",
    ]


def test_every_transaction_goes_through_the_one_doorway() -> None:
    past = [
        f"{path.relative_to(SOURCE.parent)}:{call}"
        for module, path in SERVER
        if not module.startswith(_DOORWAY)
        for call in transaction_calls(path, doorway=False)
    ]
    assert not past, "transactions opened past creditsd.kit.db.Database:\n" + "\n".join(past)


def test_only_entry_points_open_transactions() -> None:
    opened = [
        f"{path.relative_to(SOURCE.parent)}:{call}"
        for module, path in SERVER
        if layer_of(module) != Layer.SURFACE
        and not module.startswith(_DOORWAY)
        and module not in _ENTRY_POINTS_BELOW_THE_SURFACES
        for call in transaction_calls(path)
    ]
    assert not opened, "transactions opened below the surfaces:\n" + "\n".join(opened)
