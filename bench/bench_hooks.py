"""Time from a push to the commit being live in the cluster, with a push webhook and with polling.

    .venv/bin/python bench/bench_hooks.py [--sandbox DIR] [-n 5] [--poll 5s]

Runs `driftd run` (enforce mode, one environment, one Deployment) against the sandbox twice:
first with `poll_interval = "1h"` and a signed GitHub push webhook sent right after each push,
then (the baseline) without a webhook at `--poll`. Each round pushes a commit that changes the
Deployment's replicas and measures until the live object has them (polled every 20 ms).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.daemon_support import DaemonProc, GitRepo, deployment, write_config  # noqa: E402
from tests.sandbox import Sandbox, down, up  # noqa: E402
from tests.sandbox.procs import free_port  # noqa: E402

SECRET = "bench-webhook-secret"


def _replicas(sb: Sandbox, ns: str) -> int:
    return int(sb.kubectl_json("get", "deployment", "web", "-n", ns)["spec"]["replicas"])


def _hook(port: int, url: str, sha: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": sha, "repository": {"clone_url": url}}).encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/git", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={sig}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()


def _run(sb: Sandbox, work: Path, rounds: int, poll: str, webhook: bool) -> list[float]:
    tag = uuid.uuid4().hex[:6]
    ns = f"bench-hooks-{tag}"
    sb.kubectl("create", "namespace", ns)
    try:
        repo = GitRepo(sb, f"bench-hooks-{tag}.git", work / f"repo-{tag}")
        repo.commit({"k8s/app.yaml": [deployment("web", 1)]})
        secret = work / f"secret-{tag}"
        secret.write_text(SECRET)
        port = free_port()
        cfg = write_config(work / f"driftd-{tag}.toml", sb, repo_url=repo.url, state_dir=work / f"state-{tag}",
                           port=port, poll=poll, envs=[{"name": "prod", "mode": "enforce", "kubernetes": {
                               "cluster": "sandbox", "namespace": ns, "path": "k8s"},
                               # each push changes the object again: not a fight with another writer
                               "brakes": {"fight_max_reverts": 1000}}])
        if webhook:
            cfg.write_text(cfg.read_text().replace(f'poll_interval = "{poll}"',
                                                   f'poll_interval = "{poll}"\nwebhook_secret_file = "{secret}"'))
        d = DaemonProc(cfg, work / f"state-{tag}", port, work / f"driftd-{tag}.log").start()
        try:
            d.wait_checked("prod", timeout=120)
            out = []
            for i in range(rounds):
                n = 2 + i % 3 if _replicas(sb, ns) != 2 + i % 3 else 5
                sha = repo.commit({"k8s/app.yaml": [deployment("web", n)]}, message=f"round {i}")
                t0 = time.monotonic()
                if webhook:
                    _hook(port, repo.url, sha)
                while _replicas(sb, ns) != n:
                    if time.monotonic() - t0 > 120:
                        raise RuntimeError(f"round {i}: not live after 120 s; log:\n{d.tail()}")
                    time.sleep(0.02)
                out.append(time.monotonic() - t0)
            return out
        finally:
            d.stop()
    finally:
        sb.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _line(name: str, xs: list[float]) -> str:
    return (f"{name:<28} n={len(xs)}  median {statistics.median(xs):6.2f}s  min {min(xs):6.2f}s  "
            f"max {max(xs):6.2f}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sandbox", default=os.environ.get("DRIFTD_SANDBOX"), help="reuse a running sandbox")
    p.add_argument("-n", type=int, default=5, help="pushes per run")
    p.add_argument("--poll", default="5s", help="the baseline's poll_interval")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    own = not args.sandbox
    sb_dir = work / "sandbox" if own else Path(args.sandbox)
    try:
        sb = up(sb_dir) if own else Sandbox.load(sb_dir)
        hooked = _run(sb, work, args.n, "1h", webhook=True)
        polled = _run(sb, work, args.n, args.poll, webhook=False)
        print(_line("webhook (poll_interval 1h)", hooked))
        print(_line(f"polling (poll_interval {args.poll})", polled))
        print(f"median ratio polling/webhook: {statistics.median(polled) / statistics.median(hooked):.1f}x")
        return 0
    finally:
        if own and (sb_dir / "sandbox.json").exists():
            down(sb_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
