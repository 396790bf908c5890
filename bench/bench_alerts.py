"""Time from an out-of-band `kubectl` change to the alert at Alertmanager's webhook receiver.

    .venv/bin/python bench/bench_alerts.py [--sandbox DIR] [-n 20]

Runs `driftd run` (alert mode, one environment, one ConfigMap) against the sandbox. Each round
patches the ConfigMap away from Git and measures until the DriftDetected notification for it is
in the webhook's log (polled every 10 ms), then patches it back and waits for the resolved one.
The figure includes driftd's detection (watch event -> dry-run diff -> report), the outbox
delivery, and Alertmanager's own wait: group_wait for a new group, group_interval for a group that
already notified (both printed; the sandbox sets 1s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.daemon_support import seed_in_sync, write_config  # noqa: E402
from tests.sandbox import Sandbox, down, up  # noqa: E402
from tests.sandbox.procs import free_port  # noqa: E402

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: bench
data:
  value: git
"""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _notifications(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return [json.loads(x) for x in data[:end].splitlines() if x.strip()], offset + end


def _wait_alert(sb: Sandbox, env: str, status: str, since: float, timeout: float = 60.0) -> float:
    """Seconds from ``since`` until a notification with our alert in ``status`` shows up."""
    path = Path(sb.alerts_received)
    offset = _wait_alert.offset  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies, offset = _notifications(path, offset)
        _wait_alert.offset = offset  # type: ignore[attr-defined]
        for b in bodies:
            for a in b.get("alerts", []):
                if (a["labels"].get("environment") == env and a["labels"].get("alertname") == "DriftDetected"
                        and a["status"] == status):
                    return time.monotonic() - since
        time.sleep(0.01)
    raise TimeoutError(f"no {status} alert for {env} within {timeout}s")


_wait_alert.offset = 0  # type: ignore[attr-defined]


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def run(sb: Sandbox, n: int, work: Path) -> None:
    rid = uuid.uuid4().hex[:6]
    env, ns, repo = f"bench-{rid}", f"bench-alerts-{rid}", f"bench-alerts-{rid}"
    seed_in_sync(sb, repo=repo, namespace=ns, src=work / "src", manifest_file="cm.yaml", manifest=CONFIGMAP)
    port = free_port()
    cfg = work / "driftd.toml"
    write_config(cfg, sb, repo_url=sb.git_repo_url(repo), state_dir=work / "state", port=port, poll="5s",
                 alertmanager=True, resend_interval="30s",
                 envs=[{"name": env, "mode": "alert", "interval": "30s",
                        "kubernetes": {"cluster": "sandbox", "namespace": ns}}])
    log = (work / "driftd.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "driftd", "run", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, **sb.env()})
    try:
        deadline = time.monotonic() + 90
        while not _ready(f"http://127.0.0.1:{port}/readyz"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"driftd did not become ready; log: {work / 'driftd.log'}")
            time.sleep(0.2)
        _wait_alert.offset = Path(sb.alerts_received).stat().st_size  # type: ignore[attr-defined]
        fire, resolve = [], []
        for i in range(n):
            t0 = time.monotonic()
            sb.kubectl("-n", ns, "patch", "configmap/bench", "--type=merge", "-p", f'{{"data":{{"value":"oob-{i}"}}}}')
            fire.append(_wait_alert(sb, env, "firing", t0))
            t1 = time.monotonic()
            sb.kubectl("-n", ns, "patch", "configmap/bench", "--type=merge", "-p", '{"data":{"value":"git"}}')
            resolve.append(_wait_alert(sb, env, "resolved", t1))
        print(f"kubectl change -> DriftDetected at Alertmanager's webhook, n={n}")
        print(f"  Alertmanager group_wait={sb.alertmanager_group_wait} group_interval={sb.alertmanager_group_interval}"
              " (route group_by [alertname])")
        print(f"  firing:   p50 {_pct(fire, 50):.2f}s  p99 {_pct(fire, 99):.2f}s  min {min(fire):.2f}s"
              f"  max {max(fire):.2f}s")
        print(f"  resolved: p50 {_pct(resolve, 50):.2f}s  p99 {_pct(resolve, 99):.2f}s  min {min(resolve):.2f}s"
              f"  max {max(resolve):.2f}s")
    finally:
        proc.terminate()
        proc.wait(30)
        sb.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sandbox", default=os.environ.get("DRIFTD_SANDBOX"), help="reuse a running sandbox")
    p.add_argument("-n", type=int, default=20, help="rounds (default 20)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    own = not args.sandbox
    sb_dir = work / "sandbox" if own else Path(args.sandbox)
    try:
        sb = up(sb_dir) if own else Sandbox.load(sb_dir)
        run(sb, args.n, work)
    finally:
        if own and (sb_dir / "sandbox.json").exists():
            down(sb_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
