"""Run the benchmarks: ``python -m bench [NAME ...] [-- ARGS]`` (``make bench``).

Starts one sandbox of real servers for the benchmarks that need it (unless DRIFTD_SANDBOX
points at a running one), runs each ``bench/bench_<name>.py`` at its default (modest) size,
lets it print its own figures, and stops the sandbox. Figures, never assertions: targets are
read by people, not enforced by a timed test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Smallest sizes that still say something on a 2-core machine; pass the full sizes by hand.
DEFAULT_ARGS: dict[str, list[str]] = {
    "git": [],
    "git_gc": ["--cycles", "20"],  # issue 16 §3: cache size bounded under force-pushes
    "yaml": ["--runs", "1"],  # issue 14 §1 / 16 §3: 10 MB trees, Argo CD's install.yaml with --argocd
    "k8s": ["--namespaces", "50"],
    "aws": ["--sgs", "300", "--buckets", "30", "--roles", "60", "--params", "150"],
    "daemon": ["--envs", "4", "--objects", "100", "--changes", "50", "--idle", "60"],
    "alerts": ["-n", "20"],
    "registry": [],
    "hooks": ["-n", "5"],
    "scale": ["--envs", "4", "--objects", "150", "--changes", "20", "--idle", "30"],  # issue 16: 20 x 500
    "helm": [],
    "import": [],
}


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(DEFAULT_ARGS)
    unknown = [n for n in names if n not in DEFAULT_ARGS]
    if unknown:
        print(f"bench: unknown benchmark(s) {unknown}; known: {', '.join(DEFAULT_ARGS)}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    started = None
    if not env.get("DRIFTD_SANDBOX"):
        started = tempfile.mkdtemp(prefix="driftd-bench-")
        subprocess.run([sys.executable, "-m", "tests.sandbox", "up", started], cwd=ROOT, check=True)
        env["DRIFTD_SANDBOX"] = started
    failed = []
    try:
        for name in names:
            print(f"\n===== bench_{name} =====", flush=True)
            rc = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py"), *DEFAULT_ARGS[name]],
                                 cwd=ROOT, env=env)
            if rc:
                failed.append(name)
    finally:
        if started:
            subprocess.run([sys.executable, "-m", "tests.sandbox", "down", started], cwd=ROOT, check=False)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
