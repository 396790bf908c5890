"""Shared fixtures. The sandbox of real servers lives in tests/sandbox (see its README.md)."""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests` is a namespace package: make `tests.sandbox` importable
    sys.path.insert(0, str(ROOT))

from tests.sandbox import Sandbox, down, status, up  # noqa: E402

SANDBOX_FIXTURES = {"sandbox", "k8s_namespace", "sandbox_faults"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the sandbox get the `sandbox` marker, so `-m 'not sandbox'` skips them."""
    for item in items:
        if SANDBOX_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sandbox)


def _shared_dir() -> str | None:
    return os.environ.get("DRIFTD_SANDBOX") or None


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The real servers. Started once per session in a temp dir and stopped at the end,
    or, when DRIFTD_SANDBOX=DIR (or DIR/sandbox.json) is set, a running sandbox reused as is."""
    shared = _shared_dir()
    if shared:
        d = Path(shared)
        d = d.parent if d.name == "sandbox.json" else d
        if not (d / "sandbox.json").exists():
            raise RuntimeError(f"DRIFTD_SANDBOX={shared}: no sandbox.json; run: python -m tests.sandbox up {d}")
        broken = [n for n, s in status(d).items() if not s["ready"]]
        if broken:
            raise RuntimeError(f"DRIFTD_SANDBOX={shared}: not ready: {broken}; see python -m tests.sandbox status {d}")
        yield Sandbox.load(d)
        return
    d = tmp_path_factory.mktemp("sandbox")
    sb = up(d)
    try:
        yield sb
    finally:
        down(d)


@pytest.fixture
def sandbox_faults(sandbox: Sandbox) -> Sandbox:
    """The sandbox, for tests that stop/restart its servers. Skipped on a shared sandbox
    (DRIFTD_SANDBOX) unless DRIFTD_SANDBOX_FAULTS=1, so others' runs are not disturbed."""
    if _shared_dir() and os.environ.get("DRIFTD_SANDBOX_FAULTS") != "1":
        pytest.skip("fault injection on a shared sandbox needs DRIFTD_SANDBOX_FAULTS=1")
    return sandbox


@pytest.fixture
def k8s_namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (it stays Terminating:
    no controller manager runs, which is harmless)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug or 't'}-{uuid.uuid4().hex[:6]}"
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)
