"""Dependencies point one way: surfaces → domain services → the ledger engine → the kit;
and the SDK (creditsd.client, clients/python) imports nothing of the server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCE = ROOT / "src" / "creditsd"
SDK = ROOT / "clients" / "python" / "src" / "creditsd" / "client"
KIT, ENGINE, DOMAIN, SURFACE = range(4)
_KIT = {
    "config",
    "db",
    "errors",
    "fields",
    "idempotency",
    "ids",
    "jsonio",
    "migrations",
    "money",
    "pagination",
    "price_settings",
    "repeats",
    "sqlite",
    "tables",
    "version",
}
_ENGINE = {"ledger", "audit"}
_SURFACE = {"api", "cli", "inprocess", "web", "worker", "__main__"}
_SURFACE_MODULES = {"endpoints", "schemas", "params", "payers"}  # a domain's own HTTP layer


def layer(module: str) -> int:
    """Which layer a ``creditsd`` module belongs to."""
    parts = module.split(".")[1:]
    if not parts:
        return KIT  # the namespace package itself, which has no code
    if parts[0] in _SURFACE or parts[-1] in _SURFACE_MODULES:
        return SURFACE
    if parts[0] in _KIT:
        return KIT
    if parts[0] in _ENGINE:
        return ENGINE
    return DOMAIN


def imports(path: Path) -> list[tuple[str, int]]:
    """The ``creditsd`` modules a file imports at its top level (not those it imports lazily
    inside functions, nor under ``TYPE_CHECKING``), with their line numbers."""
    tree = ast.parse(path.read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:`
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [(_module(name), node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(_module(alias.name), node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.startswith("creditsd")]


def _module(name: str) -> str:
    """The module an imported name lives in (``creditsd.ledger.posting.Posting`` →
    ``creditsd.ledger.posting``)."""
    parts = name.split(".")
    while len(parts) > 1 and not (
        (SOURCE.parent / Path(*parts)).with_suffix(".py").exists()
        or (SOURCE.parent / Path(*parts) / "__init__.py").exists()
    ):
        parts.pop()
    return ".".join(parts)


def _server_modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        if module.startswith("creditsd.migrations.versions"):
            continue  # frozen history
        found.append((module, path))
    return found


def test_the_layers_are_what_this_test_thinks() -> None:
    assert layer("creditsd.ledger.posting") == ENGINE
    assert layer("creditsd.ledger.endpoints") == SURFACE
    assert layer("creditsd.stripe.service") == DOMAIN
    assert layer("creditsd.db") == KIT
    assert _module("creditsd.ledger.posting.Posting") == "creditsd.ledger.posting"


@pytest.mark.parametrize(("module", "path"), _server_modules(), ids=str)
def test_no_module_imports_a_layer_above_its_own(module: str, path: Path) -> None:
    own = layer(module)
    above = [
        f"line {line}: {imported}"
        for imported, line in imports(path)
        if layer(imported) > own and imported != module
    ]
    assert not above, f"{module} imports from above its layer: {above}"


def sdk_imports_of_the_server(path: Path, package: str) -> list[str]:
    """Every import of a ``creditsd`` module outside ``creditsd.client`` in a file of the SDK's
    ``package``, wherever it stands (lazily in a function or under ``TYPE_CHECKING`` too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, (base, node.module)))
            names = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [
            f"line {node.lineno}: {name}"
            for name in names
            if name.split(".")[0] == "creditsd" and not name.startswith("creditsd.client")
        ]
    return found


def test_the_check_of_the_sdk_finds_server_imports_however_written(tmp_path: Path) -> None:
    module = tmp_path / "_models.py"
    module.write_text(
        "from creditsd.client import _json\n"
        "from . import _errors\n"
        "def f():\n"
        "    from creditsd import money\n"
        "    from .. import jsonio\n"
        "    import creditsd.ledger\n"
    )
    assert sdk_imports_of_the_server(module, "creditsd.client") == [
        "line 4: creditsd.money",
        "line 5: creditsd.jsonio",
        "line 6: creditsd.ledger",
    ]


@pytest.mark.parametrize("path", sorted(SDK.rglob("*.py")), ids=lambda path: path.name)
def test_the_sdk_imports_nothing_of_the_server(path: Path) -> None:
    package = ".".join(("creditsd", *path.relative_to(SDK.parent).parent.parts))
    found = sdk_imports_of_the_server(path, package)
    assert not found, f"{package}.{path.stem} imports the server: {found}"


# Only entry points open, commit or roll back transactions: the surfaces; group commit,
# which opens the one transaction a batch of concurrent requests shares; the migrations,
# run before any work; and the kit's ``db`` that they all call, with its SQLite driver.
_DB_CALLS = {"run", "transaction"}
_CONNECTION_CALLS = {"connect", "begin", "begin_nested", "commit", "rollback"}
_OPENS_TRANSACTIONS = {
    "creditsd.db",
    "creditsd.sqlite",
    "creditsd.ledger.batching",
    "creditsd.migrations",
}


def transaction_calls(path: Path) -> list[str]:
    """``db.run(…)``, ``engine.connect()``, ``conn.commit()`` and the like in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        called, on = node.func.attr, node.func.value
        on_db = isinstance(on, ast.Name) and on.id == "db"
        if (on_db and called in _DB_CALLS) or called in _CONNECTION_CALLS:
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    return found


def test_the_check_for_transactions_finds_one(tmp_path: Path) -> None:
    service = tmp_path / "service.py"
    service.write_text("async def f(engine):\n    return await db.run(engine, work)\n")
    assert transaction_calls(service) == ["line 2: db.run"]


@pytest.mark.parametrize(("module", "path"), _server_modules(), ids=str)
def test_only_entry_points_open_transactions(module: str, path: Path) -> None:
    if layer(module) == SURFACE or module in _OPENS_TRANSACTIONS:
        return
    assert not transaction_calls(path), f"{module} opens its own transactions"
