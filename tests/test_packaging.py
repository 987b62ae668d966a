"""What a wheel of creditsd carries: every file the server reads at run time that is not
Python (templates, static files, migrations' scripts) is named in its package data."""

from __future__ import annotations

import tomllib
from pathlib import Path

import creditsd

PACKAGE = Path(creditsd.__file__).parent
PYPROJECT = PACKAGE.parent.parent / "pyproject.toml"
DATA_FOLDERS = ("web/templates", "web/static", "migrations")


def test_every_template_static_file_and_migration_script_is_package_data() -> None:
    settings = tomllib.loads(PYPROJECT.read_text())
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
