"""Benchmark `driftd run` on the sandbox: detection and revert latency, idle CPU/RSS/API calls.

    DRIFTD_SANDBOX=/path/to/sandbox .venv/bin/python bench/bench_daemon.py [--envs 20] [--objects 500]
        [--changes 50] [--idle 60]

Each environment has its own namespace of ConfigMaps; half the environments are in alert mode
(detection latency: kubectl change -> `detected` row committed), half in enforce (revert latency:
kubectl change -> `reverted` row committed). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_support import DaemonProc, GitRepo, configmap, wait_for, write_config  # noqa: E402
from tests.sandbox import Sandbox  # noqa: E402
from tests.sandbox.procs import free_port  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def proc_stats(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return cpu, rss


def api_calls(port: int) -> tuple[float, float]:
    """(all live API calls, apply calls = dry runs or reverts) from /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = applies = 0.0
    for line in text.splitlines():
        if line.startswith("driftd_api_requests_total{"):
            v = float(line.rsplit(" ", 1)[1])
            total += v
            if re.search(r'operation="apply ', line):
                applies += v
    return total, applies


def event_ts(state: Path, env: str, name: str, event: str, after_id: int) -> tuple[float, int] | None:
    c = sqlite3.connect(state / "driftd.db")
    try:
        row = c.execute("SELECT ts, id FROM events WHERE env = ? AND name = ? AND event = ? AND id > ? ORDER BY id "
                        "LIMIT 1", (env, name, event, after_id)).fetchone()
    finally:
        c.close()
    return (float(row[0]), int(row[1])) if row else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=20)
    ap.add_argument("--objects", type=int, default=500)
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--idle", type=float, default=60.0)
    args = ap.parse_args()
    sb = Sandbox.load(os.environ["DRIFTD_SANDBOX"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    tag = uuid.uuid4().hex[:6]
    repo = GitRepo(sb, f"bench-{tag}.git", tmp / "work")
    envs, files, nss = [], {}, []
    t0 = time.monotonic()
    for i in range(args.envs):
        name = f"e{i:02d}"
        ns = f"bench-{tag}-{i:02d}"
        nss.append(ns)
        docs = [configmap(f"cm{j:04d}", {"k": str(j)}) for j in range(args.objects)]
        sb.kubectl("create", "namespace", ns)
        sb.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
        files[f"{name}/app.yaml"] = docs
        envs.append({"name": name, "mode": "alert" if i % 2 == 0 else "enforce",
                     "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": name},
                     "brakes": {"storm_min_objects": 100000}})
    repo.commit(files)
    print(f"setup: {args.envs} environments x {args.objects} ConfigMaps in {time.monotonic() - t0:.1f}s")
    state, port = tmp / "state", free_port()
    cfg = write_config(tmp / "driftd.toml", sb, repo_url=repo.url, state_dir=state, port=port, envs=envs, poll="30s")
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        t0 = time.monotonic()
        d.wait_checked(*(e["name"] for e in envs), timeout=900)
        print(f"startup: every environment checked in {time.monotonic() - t0:.1f}s")
        assert d.proc is not None
        detect: list[float] = []
        revert: list[float] = []
        rnd = random.Random(1)
        last = 0
        for n in range(args.changes * 2):
            i = n % args.envs
            env, ns = envs[i]["name"], nss[i]
            obj = f"cm{rnd.randrange(args.objects):04d}"
            start = datetime.now().timestamp()
            sb.kubectl("label", "configmap", obj, "-n", ns, f"bench=n{n}", "--overwrite")
            ev = "detected" if envs[i]["mode"] == "alert" else "reverted"
            got = wait_for(lambda env=env, obj=obj, ev=ev: event_ts(state, env, obj, ev, last), 30,
                           f"{ev} {env}/{obj}")
            last = got[1]
            (detect if ev == "detected" else revert).append(got[0] - start)
            if ev == "detected":  # put it back, so the next change to it is a new drift
                sb.kubectl("label", "configmap", obj, "-n", ns, "bench-")
        time.sleep(5)
        print(f"detection latency over {len(detect)} changes: p50 {pct(detect, 50):.3f}s  p99 {pct(detect, 99):.3f}s"
              f"  max {max(detect):.3f}s")
        print(f"revert latency over {len(revert)} changes:    p50 {pct(revert, 50):.3f}s  p99 {pct(revert, 99):.3f}s"
              f"  max {max(revert):.3f}s")
        cpu0, _ = proc_stats(d.proc.pid)
        calls0, applies0 = api_calls(port)
        time.sleep(args.idle)
        cpu1, rss = proc_stats(d.proc.pid)
        calls1, applies1 = api_calls(port)
        per_min = 60.0 / args.idle
        print(f"idle for {args.idle:.0f}s: CPU {(cpu1 - cpu0) * per_min:.2f} s/min "
              f"({(cpu1 - cpu0) / args.idle * 100:.1f}% of a core), RSS {rss:.0f} MB, "
              f"API requests {(calls1 - calls0) * per_min:.1f}/min, dry-run/apply calls {applies1 - applies0:.0f}")
    finally:
        print(f"daemon exit code {d.stop()}")
        for ns in nss:
            sb.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
