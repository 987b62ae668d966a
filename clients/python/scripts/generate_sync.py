"""Write the blocking client, ``_sync.py``, from the asyncio one, ``_async.py``.

    .venv/bin/python clients/python/scripts/generate_sync.py          # rewrite _sync.py
    .venv/bin/python clients/python/scripts/generate_sync.py --check  # fail if it is stale

The rewrite works on tokens, so comments and layout carry over: ``async`` and ``await`` go,
the names in ``RENAMES`` change in code and prose, the phrases in ``PHRASES`` change in
docstrings and comments, and ``for x in xs: yield x`` (all an async generator can write)
becomes ``yield from xs``. ruff then sorts the imports and formats the result. A word of
asyncio left over (a name or phrase without a twin here yet) stops the script, naming it.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import itertools
import re
import subprocess
import sys
import tokenize
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1] / "src" / "creditsd" / "client"
SOURCE = CLIENT / "_async.py"
TARGET = CLIENT / "_sync.py"
COMMAND = ".venv/bin/python clients/python/scripts/generate_sync.py"
HEADER = f"# Generated from _async.py by `{COMMAND}`.\n"

# Each asyncio name and its blocking twin, in code and prose.
RENAMES = {
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "AsyncIterator": "Iterator",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aclose": "close",
}
# Modules, in code only. asyncio.sleep is all the client takes from asyncio, so the module
# itself becomes time (mypy rejects any other asyncio function called on it).
MODULES = {"asyncio": "time"}
IN_CODE = RENAMES | MODULES
# Prose of docstrings and comments, replaced before the names above.
PHRASES = {
    "The asyncio client": "The blocking client",
    "for asyncio": "for blocking code",
    "an async context manager": "a context manager",
}
ASYNC_WORD = re.compile(r"\w*(?:async|await)\w*|\baclose\b|__a(?:enter|exit)__", re.IGNORECASE)


def offsets(text: str) -> list[int]:
    """Where each line of ``text`` starts, by 1-based line number (index 0 unused)."""
    starts = [0, 0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """``text`` with each ``(start, end, replacement)`` span replaced (spans do not overlap)."""
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def reword(prose: str) -> str:
    """A docstring or comment of the async client, said of the blocking one."""
    for phrase, twin in PHRASES.items():
        prose = prose.replace(phrase, twin)
    return re.sub(r"\w+", lambda word: RENAMES.get(word[0], word[0]), prose)


def drop_async(source: str) -> str:
    """``source`` without ``async``/``await`` and with every name and phrase rewritten."""
    line_start = offsets(source)
    edits: list[tuple[int, int, str]] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for token, following in itertools.pairwise(tokens):
        start = line_start[token.start[0]] + token.start[1]
        end = line_start[token.end[0]] + token.end[1]
        if token.type == tokenize.NAME and token.string in {"async", "await"}:
            # The keyword and the space after it: ``await self._send(…)`` → ``self._send(…)``.
            edits.append((start, line_start[following.start[0]] + following.start[1], ""))
        elif token.type == tokenize.NAME and token.string in IN_CODE:
            edits.append((start, end, IN_CODE[token.string]))
        elif token.type in {tokenize.STRING, tokenize.COMMENT}:
            edits.append((start, end, reword(token.string)))
    return apply(source, edits)


def delegate_yields(source: str) -> str:
    """``source`` with each ``for x in xs: yield x`` loop written ``yield from xs``."""
    line_start = offsets(source)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and not node.orelse
            and len(node.body) == 1
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Yield)
            and isinstance(node.body[0].value.value, ast.Name)
            and node.body[0].value.value.id == node.target.id
        ):
            start = line_start[node.lineno] + node.col_offset
            end = line_start[node.end_lineno or node.lineno] + (node.end_col_offset or 0)
            edits.append((start, end, f"yield from {ast.get_source_segment(source, node.iter)}"))
    return apply(source, edits)


def ruff(arguments: list[str], source: str) -> str:
    """``source`` passed through a ruff command, with the project's settings for _sync.py."""
    command = [sys.executable, "-m", "ruff", *arguments, "--stdin-filename", str(TARGET), "-"]
    # This interpreter's ruff, the one the project's checks run, on text we wrote.
    done = subprocess.run(command, input=source, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[2:])} failed on the generated client:\n{done.stderr}")
    return done.stdout


def generate(source: str) -> str:
    """The blocking client's module, written from the asyncio client's source."""
    rewritten = drop_async(source)
    # Still line for line with the source, so the numbers name the source's lines.
    for number, line in enumerate(rewritten.splitlines(), 1):
        if leftover := ASYNC_WORD.search(line):
            sys.exit(
                f"{SOURCE.name}:{number}: {leftover[0]!r} has no blocking twin in "
                f"{Path(__file__).name}: add it to RENAMES or PHRASES"
            )
    written = HEADER + delegate_yields(rewritten)
    sorted_imports = ruff(["check", "--quiet", "--select", "I", "--fix"], written)
    return ruff(["format", "--quiet"], sorted_imports)


def main() -> None:
    """Write _sync.py, or with --check fail (showing the difference) when it is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; fail if _sync.py is not current"
    )
    arguments = parser.parse_args()
    expected = generate(SOURCE.read_text())
    current = TARGET.read_text() if TARGET.exists() else ""
    if current == expected:
        return
    if not arguments.check:
        TARGET.write_text(expected)
        return
    difference = difflib.unified_diff(
        current.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        f"{TARGET.name} (checked in)",
        f"{TARGET.name} (generated)",
    )
    sys.stderr.writelines(difference)
    sys.exit(f"{TARGET.name} is not what {SOURCE.name} generates: run `{COMMAND}`")


if __name__ == "__main__":
    main()
