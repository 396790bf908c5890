"""docs/security.md names, for each claim, the test that proves it: every one it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_security_md_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    named: list[tuple[str, str | None]] = []
    current = None
    # "`tests/x.py::test_a`", then "`::test_b`" refers to the same file
    for m in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?`", text):
        file, test = m.group(1), m.group(2)
        if file:
            current = file
        if file or test:
            named.append((file or current or "", test))
    assert len([t for _, t in named if t]) >= 20
    for file, test in named:
        path = ROOT / file
        assert path.is_file(), file
        if test:
            tree = ast.parse(path.read_text())
            names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            assert test in names, f"{file}::{test} named in docs/security.md does not exist"
