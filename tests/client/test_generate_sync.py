"""The blocking client, as clients/python/scripts/generate_sync.py writes it from the async one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = Path("clients", "python", "scripts", "generate_sync.py")
CLIENT = Path("clients", "python", "src", "creditsd", "client")
COMMAND = ".venv/bin/python clients/python/scripts/generate_sync.py"
EXTEND = '"""Keep an open hold alive for ``expires_in`` more seconds from now."""'


def generate(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """The script of the tree at ``root``, run on that tree."""
    return subprocess.run(
        [sys.executable, root / SCRIPT, *options], capture_output=True, text=True, check=False
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the script, the client and the ruff settings the client is held to."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / SCRIPT.parent, tmp_path / SCRIPT.parent)
    shutil.copytree(ROOT / CLIENT, tmp_path / CLIENT, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def edit_async_client(tree: Path, old: str, new: str) -> None:
    """Replace the one ``old`` in the copy's _async.py with ``new``."""
    source = tree / CLIENT / "_async.py"
    assert source.read_text().count(old) == 1
    source.write_text(source.read_text().replace(old, new))


def test_the_checked_in_blocking_client_is_what_the_script_writes() -> None:
    checked = generate(ROOT, "--check")
    assert checked.returncode == 0, checked.stderr
    first_line = (ROOT / CLIENT / "_sync.py").read_text().splitlines()[0]
    assert first_line == f"# Generated from _async.py by `{COMMAND}`."


def test_an_edit_of_the_async_client_fails_the_check_until_the_script_runs(tree: Path) -> None:
    generated = tree / CLIENT / "_sync.py"
    before = generated.read_text()
    edited = EXTEND.replace("from now.", "from now, once.")
    edit_async_client(tree, EXTEND, edited)

    stale = generate(tree, "--check")
    assert stale.returncode == 1
    assert f"-        {EXTEND}\n+        {edited}\n" in stale.stderr
    last_line = stale.stderr.splitlines()[-1]
    assert last_line == f"_sync.py is not what _async.py generates: run `{COMMAND}`"
    assert generated.read_text() == before

    assert generate(tree).returncode == 0
    assert generated.read_text() == before.replace(EXTEND, edited)
    assert generate(tree, "--check").returncode == 0


def test_an_async_word_without_a_blocking_twin_stops_the_script(tree: Path) -> None:
    generated = tree / CLIENT / "_sync.py"
    before = generated.read_text()
    edit_async_client(tree, EXTEND, EXTEND.replace("Keep", "Awaiting the server, keep"))
    lines = (tree / CLIENT / "_async.py").read_text().splitlines()
    number = next(index for index, line in enumerate(lines, 1) if "Awaiting" in line)

    for options in [(), ("--check",)]:
        stopped = generate(tree, *options)
        assert stopped.returncode == 1
        assert stopped.stderr == (
            f"_async.py:{number}: 'Awaiting' has no blocking twin in generate_sync.py: "
            "add it to RENAMES or PHRASES\n"
        )
    assert generated.read_text() == before
