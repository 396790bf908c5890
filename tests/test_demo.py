"""`make demo`'s script runs green against the sandbox and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_green(sandbox: Sandbox) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--sandbox", sandbox.dir],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    text = out.stdout
    assert out.returncode == 0, text[-4000:] + out.stderr[-4000:]
    for expected in (
        "changed by kubectl-set",  # who made the prod image change
        "changed by kubectl-patch",
        '/VersioningConfiguration/Status: "Enabled" -> "Suspended"',
        "replicas 2, env ['LOG_FORMAT']",  # staging reverted: scale and the added env var undone
        "firing   DriftDetected  prod",
        "firing   DriftReverted  staging",
        "driftd_reverts_total{",
        "driftd_alerts_sent_total",
        "driftd exited with 0",
    ):
        assert expected in text, f"{expected!r} missing from the demo's output:\n{text[-4000:]}"
