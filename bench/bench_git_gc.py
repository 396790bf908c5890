"""Benchmark the Git cache's garbage collection in a long run of force-pushes (issue #16 §3).

A remote with one base commit; each cycle force-pushes a new commit carrying an incompressible blob
in place of the previous one and creates then deletes a branch, and the cache fetches. Two caches
follow the same remote: one with collection (the default policy: when the cache has doubled since
the last collection) and one without (the baseline, as before). Printed: the cache sizes over the
run, the collections and what they cost.

    .venv/bin/python bench/bench_git_gc.py [--cycles 40] [--blob-kb 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from driftd.config import RepositorySettings
from driftd.sources.git import RepositoryCache, _cache_bytes

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
       "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


async def run(args: argparse.Namespace, root: Path) -> None:
    remote = root / "remote.git"
    work = root / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=root)
    git("init", "--quiet", "--initial-branch=main", str(work), cwd=root)
    git("remote", "add", "origin", str(remote), cwd=work)
    (work / "base.bin").write_bytes(os.urandom(args.blob_kb * 1024))
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "base", cwd=work)
    base = git("rev-parse", "HEAD", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    url = f"file://{remote}"
    with_gc = RepositoryCache(RepositorySettings(name="gc", url=url, timeout=300), root / "a")
    without = RepositoryCache(RepositorySettings(name="nogc", url=url, timeout=300), root / "b",
                              gc_growth=float("inf"))
    sizes: dict[str, list[int]] = {"with gc": [], "without gc": []}
    fetch_s: list[float] = []
    gc_s: list[float] = []
    for i in range(args.cycles):
        git("checkout", "--quiet", "-B", "main", base, cwd=work)
        (work / "big.bin").write_bytes(os.urandom(args.blob_kb * 1024))
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", f"rewrite {i}", cwd=work)
        git("push", "--quiet", "--force", "origin", "main", cwd=work)
        git("checkout", "--quiet", "-B", "tmp", base, cwd=work)
        (work / "tmp.bin").write_bytes(os.urandom(args.blob_kb * 1024))
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", f"tmp {i}", cwd=work)
        git("push", "--quiet", "origin", "tmp", cwd=work)
        for step in ("push", "delete"):
            if step == "delete":
                git("push", "--quiet", "origin", "--delete", "tmp", cwd=work)
            for c, label in ((with_gc, "with gc"), (without, "without gc")):
                runs = c.gc_runs
                t0 = time.perf_counter()
                await c.fetch()
                if c is with_gc:
                    (gc_s if c.gc_runs > runs else fetch_s).append(time.perf_counter() - t0)
                if step == "delete":
                    sizes[label].append(_cache_bytes(c.path))
    live = 2 * args.blob_kb * 1024
    print(f"{args.cycles} cycles of force-push + branch create/delete, {args.blob_kb} KiB incompressible blob each "
          f"(live data {live / 1e6:.2f} MB)")
    for label, s in sizes.items():
        print(f"  cache size {label:11s} min/median/max {min(s) / 1e6:6.2f}/{statistics.median(s) / 1e6:6.2f}/"
              f"{max(s) / 1e6:6.2f} MB, at the end {s[-1] / 1e6:6.2f} MB")
    print(f"  collections: {with_gc.gc_runs}; fetch+gc {min(gc_s, default=0) * 1000:.0f}/"
          f"{statistics.median(gc_s or [0]) * 1000:.0f}/{max(gc_s, default=0) * 1000:.0f} ms min/median/max; "
          f"fetch without gc {min(fetch_s) * 1000:.0f}/{statistics.median(fetch_s) * 1000:.0f}/"
          f"{max(fetch_s) * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=40)
    ap.add_argument("--blob-kb", type=int, default=256)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="driftd-bench-gc-"))
    try:
        anyio.run(run, args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
