"""How long ``import driftd.daemon`` plus building a Kubernetes-only daemon takes in a fresh interpreter,
and which client libraries it loads (issue 12: the AWS stack used to be imported by engine/images.py
for every daemon, about 0.4 s of its import). Baseline in the same run: the same probe with an AWS
environment, which does need botocore.

    python bench/bench_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_import_seams import loaded_clients, probe_config  # the same probe as the test


def run(tmp: Path, aws: bool) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    loaded = loaded_clients(tmp, probe_config(tmp, aws=aws))
    return time.perf_counter() - t0, loaded


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
