"""How long ``import driftd.daemon`` plus building a Kubernetes-only daemon takes in a fresh interpreter,
and which client libraries it loads (issue 12: the AWS stack used to be imported by engine/images.py
for every daemon, about 0.4 s of its import). Baseline in the same run: the same probe with an AWS
environment, which does need botocore.

    python bench/bench_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
from pathlib import Path
import driftd.daemon
from driftd.config import parse_config
cfg = parse_config(json.loads(sys.argv[1]), Path(sys.argv[2]))
d = driftd.daemon.Daemon(cfg)
for env in cfg.environments:
    for kind, name in d.pool.names(env):
        d.pool.get(kind, name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"botocore", "aioboto3", "kubernetes_asyncio"})))
"""


def config(tmp: Path, aws: bool) -> dict[str, object]:
    env: dict[str, object] = {"name": "prod", "repository": "envs", "branch": "main", "kubernetes": {"cluster": "c"}}
    cfg: dict[str, object] = {"daemon": {"state_dir": str(tmp / "state")}, "clusters": [{"name": "c"}],
                              "repositories": [{"name": "envs", "url": "https://git.example.com/envs.git"}],
                              "environments": [env]}
    if aws:
        cfg["aws_accounts"] = [{"name": "a", "region": "eu-west-1"}]
        env["aws"] = {"account": "a"}
    return cfg


def run(tmp: Path, aws: bool) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(config(tmp, aws)), str(tmp / "driftd.toml")],
                         capture_output=True, text=True, check=True, cwd=str(tmp),
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - t0, json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run(tmp, False)  # warm the OS page cache once
        for label, aws in (("kubernetes-only", False), ("with an AWS environment (baseline)", True)):
            times, loaded = [], []
            for _ in range(args.runs):
                t, loaded = run(tmp, aws)
                times.append(t)
            print(f"{label:38s} median {statistics.median(times):.3f} s  min {min(times):.3f} s  "
                  f"(n={args.runs})  loads: {', '.join(loaded) or 'none'}")


if __name__ == "__main__":
    main()
