"""What the two wheels carry, and the client installed alone.

The server (creditsd, the repository's root) and the SDK (creditsd-client, clients/python)
share the namespace package ``creditsd``: the SDK's wheel carries ``creditsd/client`` and
needs only httpx; the server's carries the rest, every file it reads at run time included,
and needs the SDK. No file is in both, so uninstalling one leaves the other whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from importlib.metadata import Distribution, distributions
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from creditsd.client._base import VERSION
from tests.test_processes import serve

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "creditsd"
CLIENT = ROOT / "clients" / "python"
DATA_FOLDERS = ("web/templates", "web/static", "migrations")
SERVER_LIBRARIES = {"fastapi", "starlette", "pydantic", "sqlalchemy", "alembic", "uvicorn"}


def project(folder: Path) -> dict[str, Any]:
    """The ``[project]`` table of a folder's pyproject.toml."""
    table: dict[str, Any] = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    return table


def test_every_template_static_file_and_migration_script_is_package_data() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = settings["tool"]["setuptools"]["package-data"]["creditsd"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern)}
    needed = {
        path
        for folder in DATA_FOLDERS
        for path in (PACKAGE / folder).rglob("*")
        if path.is_file()
        and path.suffix not in {".pyc"}
        and "__pycache__" not in path.parts
        and not (path.suffix == ".py" and path.parent.name != "versions")
    }
    missing = sorted(str(path.relative_to(PACKAGE)) for path in needed - shipped)
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_the_sdk_is_released_with_the_server() -> None:
    server, sdk = project(ROOT), project(CLIENT)
    assert sdk["version"] == server["version"] == VERSION
    pinned = [Requirement(line) for line in server["dependencies"]]
    assert [str(needed.specifier) for needed in pinned if needed.name == sdk["name"]] == [
        f"=={server['version']}"
    ]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, zipfile.ZipFile]]:
    """The server's and the SDK's wheels, built as pip builds them, from copies of what an
    sdist holds (so nothing a build left in the work tree gets in)."""
    work = tmp_path_factory.mktemp("wheels")
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(CLIENT, work / "client", ignore=junk)
    shutil.copytree(ROOT / "src", work / "server" / "src", ignore=junk)
    shutil.copy(ROOT / "pyproject.toml", work / "server")
    shutil.copy(ROOT / "README.md", work / "server")
    built = work / "out"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir"]
    subprocess.run([*pip_wheel, built, work / "server", work / "client"], check=True)
    with (
        zipfile.ZipFile(next(built.glob("creditsd-*.whl"))) as server,
        zipfile.ZipFile(next(built.glob("creditsd_client-*.whl"))) as sdk,
    ):
        yield {"creditsd": server, "creditsd-client": sdk}


def contents(wheel: zipfile.ZipFile) -> set[str]:
    """The files a wheel installs, its own metadata aside."""
    return {name for name in wheel.namelist() if ".dist-info/" not in name}


def requirements(wheel: zipfile.ZipFile) -> list[Requirement]:
    """What a wheel's metadata says it needs (its extras' needs aside)."""
    (metadata,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(metadata).decode())
    needed = [Requirement(line) for line in message.get_all("Requires-Dist", [])]
    return [requirement for requirement in needed if requirement.marker is None]


def test_the_sdk_wheel_carries_creditsd_client_alone_and_needs_only_httpx(
    wheels: dict[str, zipfile.ZipFile],
) -> None:
    sdk = wheels["creditsd-client"]
    source = CLIENT / "src"
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / "creditsd" / "client").iterdir()
        if path.suffix == ".py" or path.name == "py.typed"
    }
    assert contents(sdk) == expected
    assert "creditsd/client/py.typed" in expected
    assert [str(needed) for needed in requirements(sdk)] == ["httpx<1,>=0.27"]


def test_the_server_wheel_needs_the_sdk_and_carries_none_of_it(
    wheels: dict[str, zipfile.ZipFile],
) -> None:
    server = contents(wheels["creditsd"])
    assert "creditsd/ledger/posting.py" in server
    assert "creditsd/web/templates/billing.html" in server
    assert not [name for name in server if name.startswith("creditsd/client/")]
    # The namespace package has no __init__.py for one uninstall to take from the other.
    assert "creditsd/__init__.py" not in server | contents(wheels["creditsd-client"])
    assert not server & contents(wheels["creditsd-client"])
    assert f"creditsd-client=={VERSION}" in [
        str(needed) for needed in requirements(wheels["creditsd"])
    ]


def needed_by(name: str, installed: dict[str, Distribution]) -> set[str]:
    """``name`` and everything its metadata needs on this Python, transitively."""
    found: set[str] = set()
    waiting = [name]
    while waiting:
        current = canonicalize_name(waiting.pop())
        if current not in found:
            found.add(current)
            needs = [Requirement(line) for line in installed[current].requires or []]
            waiting += [
                needed.name
                for needed in needs
                if needed.marker is None or needed.marker.evaluate({"extra": ""})
            ]
    return found


# Run in the fresh environment: a customer's app, its balance, a charge, a refusal.
APP = """
import json, sys
from decimal import Decimal
from creditsd.client import Client, InsufficientCreditsError

base, secret = sys.argv[1:]
seen = {}
with Client(base, secret, app="probe") as credits:
    credits.grant("user_2abc", 100, reason="welcome")
    seen["balance"] = str(credits.charge("user_2abc", Decimal("10.5")).balance)
    try:
        credits.charge("user_2abc", 1000)
    except InsufficientCreditsError as refused:
        seen["refused"] = [str(refused.required), str(refused.available)]
    seen["available"] = str(credits.get_balance("user_2abc"))
seen["modules"] = sorted(sys.modules)
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_the_sdk_installs_alone_beside_httpx_and_talks_to_a_real_server(
    wheels: dict[str, zipfile.ZipFile], tmp_path: Path
) -> None:
    venv = tmp_path / "app"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    wheel = wheels["creditsd-client"].filename
    assert wheel is not None
    subprocess.run([*pip, "install", "--quiet", wheel], check=True, capture_output=True)

    listed = subprocess.run(
        [*pip, "list", "--format=json"], check=True, capture_output=True, text=True
    ).stdout
    names = {canonicalize_name(entry["name"]) for entry in json.loads(listed)}
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    installed: dict[str, Distribution] = {
        canonicalize_name(dist.metadata["Name"]): dist for dist in distributions(path=[site])
    }
    assert names == set(installed) == needed_by("creditsd-client", installed)
    assert "httpx" in names
    assert not names & SERVER_LIBRARIES
    assert [path.name for path in (Path(site) / "creditsd").iterdir()] == ["client"]

    database_url = f"sqlite:///{tmp_path}/creditsd.db"
    with serve(database_url, tmp_path) as base:
        key = [sys.executable, "-m", "creditsd", "keys", "create", "--scope", "admin"]
        created = subprocess.run(
            [*key, "--name", "app"],
            env={
                **os.environ,
                "CREDITSD_DATABASE_URL": database_url,
                "CREDITSD_CONFIG": os.devnull,
            },
            check=True,
            capture_output=True,
            text=True,
        )
        secret = created.stdout.splitlines()[-1]
        # -I: the app's own environment alone, not this checkout's sources nor PYTHONPATH.
        ran = subprocess.run(
            [python, "-I", "-c", APP, base, secret],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
    seen = json.loads(ran.stdout)
    assert (seen["balance"], seen["refused"], seen["available"]) == (
        "89.5",
        ["1000", "89.5"],
        "89.5",
    )
    ours = [name for name in seen["modules"] if name.split(".")[0] == "creditsd"]
    assert ours[0] == "creditsd" and all(name.startswith("creditsd.client") for name in ours[1:])
    assert not {name.split(".")[0] for name in seen["modules"]} & SERVER_LIBRARIES
