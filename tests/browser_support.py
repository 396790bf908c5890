"""A real headless browser for the web page's tests: Debian's chromium, driven by playwright's Python
package with ``executable_path`` (playwright's own browser download is not used; scripts/system-deps.sh
installs chromium). Screenshots go to tests/artifacts/ (gitignored; $DRIFTD_TEST_ARTIFACTS overrides)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def artifacts_dir() -> Path:
    d = Path(os.environ.get("DRIFTD_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


@contextmanager
def browser() -> Iterator[Any]:
    """A launched chromium (playwright Browser); skips the test when chromium or playwright is absent."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()
