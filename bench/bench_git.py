"""Benchmark the Git source: cold fetch + parse of many branches, incremental fetch, no-op poll, peak RSS.

Baseline in the same run: ``git fetch`` of the same repository with the git CLI (cold and incremental).

    .venv/bin/python bench/bench_git.py                     # modest: 10 branches x 500 files, 100 commits
    .venv/bin/python bench/bench_git.py --branches 50 --files 2000 --commits 300   # the full size

The repository is generated with ``git fast-import`` and served by ``git daemon`` on loopback.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from driftd.config import EnvironmentSettings, KubernetesEnvSettings, RepositorySettings
from driftd.sources.git import RepositoryCache
from driftd.sources.loader import DesiredStateLoader
from tests.sandbox.procs import free_port

MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  labels: {{app: app-{i}, tier: backend}}
spec:
  replicas: {r}
  selector:
    matchLabels: {{app: app-{i}}}
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      containers:
      - name: app
        image: registry.example.com/app-{i}:1.{r}.0
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}
"""


def _blob(data: bytes) -> bytes:
    return b"data %d\n" % len(data) + data + b"\n"


def _path(i: int) -> str:
    return f"kubernetes/team-{i % 25:02d}/app-{i:05d}.yaml"


def generate(remote: Path, branches: int, files: int, commits: int) -> None:
    """main: one commit with every file, then commits changing a few files each; one extra commit per branch."""
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)], check=True)
    out: list[bytes] = []
    t = 1_700_000_000
    mark = 0

    def commit(ref: str, changes: dict[str, bytes], parent: str | None) -> str:
        nonlocal mark, t
        mark += 1
        t += 60
        m = f":{mark}"
        msg = b"change"
        out.append(f"commit {ref}\nmark {m}\ncommitter bench <b@example.com> {t} +0000\n".encode())
        out.append(b"data %d\n%s\n" % (len(msg), msg))
        if parent:
            out.append(f"from {parent}\n".encode())
        for path, data in changes.items():
            out.append(f"M 100644 inline {path}\n".encode() + _blob(data))
        return m

    head = commit("refs/heads/main", {_path(i): MANIFEST.format(i=i, r=1).encode() for i in range(files)}, None)
    for c in range(1, commits - branches):
        changes = {_path((c * 7 + k) % files): MANIFEST.format(i=(c * 7 + k) % files, r=c + 1).encode()
                   for k in range(3)}
        head = commit("refs/heads/main", changes, head)
    for b in range(branches):
        commit(f"refs/heads/env-{b:02d}", {_path(b): MANIFEST.format(i=b, r=1000 + b).encode()}, head)
    subprocess.run(["git", "--git-dir", str(remote), "fast-import", "--quiet"], input=b"".join(out), check=True)
    subprocess.run(["git", "--git-dir", str(remote), "gc", "--quiet"], check=True)


def push_one_commit(remote: Path, branch: str, i: int, r: int) -> None:
    t = int(time.time())
    data = MANIFEST.format(i=i, r=r).encode()
    stream = (f"commit refs/heads/{branch}\ncommitter bench <b@example.com> {t} +0000\ndata 3\none\n"
              f"from refs/heads/{branch}^0\nM 100644 inline {_path(i)}\n").encode() + _blob(data)
    subprocess.run(["git", "--git-dir", str(remote), "fast-import", "--quiet"], input=stream, check=True)


def git_fetch(url: str, target: Path) -> float:
    if not target.exists():
        subprocess.run(["git", "init", "--quiet", "--bare", str(target)], check=True)
    start = time.perf_counter()
    subprocess.run(["git", "--git-dir", str(target), "fetch", "--quiet", "--prune", url,
                    "+refs/heads/*:refs/heads/*"], check=True)
    return time.perf_counter() - start


async def run(args: argparse.Namespace, root: Path, url: str, remote: Path) -> None:
    cache = RepositoryCache(RepositorySettings(name="bench", url=url, timeout=600), root / "state")
    loader = DesiredStateLoader({"bench": cache})
    envs = [EnvironmentSettings(name=f"env-{b:02d}", repository="bench", branch=f"env-{b:02d}",
                                kubernetes=KubernetesEnvSettings(cluster="c", path="kubernetes", namespace="apps"))
            for b in range(args.branches)]

    async def load_all() -> tuple[float, int]:
        start = time.perf_counter()
        parsed = 0
        for e in envs:
            r = await loader.load(e)
            assert r.ok, r.error
            parsed += r.parsed
        return time.perf_counter() - start, parsed

    t0, c0 = time.perf_counter(), time.process_time()
    cold = await cache.fetch()
    t_fetch, c_fetch = time.perf_counter() - t0, time.process_time() - c0
    c0 = time.process_time()
    t_parse, _ = await load_all()
    c_parse = time.process_time() - c0
    print(f"cold fetch (dulwich, git://):     {t_fetch * 1000:9.1f} ms  (cpu {c_fetch * 1000:.0f} ms) "
          f"{cold.bytes_received / 1e6:.1f} MB, {len(cold.heads)} branches")
    print(f"cold parse of all branches:        {t_parse * 1000:9.1f} ms  (cpu {c_parse * 1000:.0f} ms) "
          f"{loader.parse_count} files parsed, "
          f"{sum(len(r.state.kubernetes) for r in [await loader.load(envs[0])] if r.state)} objects/branch")

    polls, cpus = [], []
    for _ in range(args.polls):
        t0, c0 = time.perf_counter(), time.process_time()
        r = await cache.fetch()
        polls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        assert not r.changed
    before = loader.parse_count
    t_noop_load, parsed = await load_all()
    print(f"no-op poll (fetch):                {statistics.median(polls) * 1000:9.1f} ms  median of {len(polls)}, "
          f"min {min(polls) * 1000:.1f} ms (cpu median {statistics.median(cpus) * 1000:.1f} ms)")
    print(f"no-op load of all branches:        {t_noop_load * 1000:9.1f} ms  {loader.parse_count - before} files "
          f"parsed, {parsed} environments parsed")

    push_one_commit(remote, "env-03", 3, 5000)
    t0, c0 = time.perf_counter(), time.process_time()
    inc = await cache.fetch()
    t_inc, c_inc = time.perf_counter() - t0, time.process_time() - c0
    before = loader.parse_count
    t_inc_load, parsed = await load_all()
    print(f"incremental fetch (1 commit):      {t_inc * 1000:9.1f} ms  (cpu {c_inc * 1000:.0f} ms) "
          f"{inc.bytes_received} bytes, "
          f"changed {list(inc.changed)}")
    print(f"incremental load of all branches:  {t_inc_load * 1000:9.1f} ms  {loader.parse_count - before} file(s) "
          f"parsed, {parsed} environment(s) parsed")

    # baseline: the git CLI fetching the same repository over the same transport
    mirror = root / "git-cli.git"
    t_git_cold = git_fetch(url, mirror)
    t_git_noop = statistics.median([git_fetch(url, mirror) for _ in range(5)])
    push_one_commit(remote, "env-04", 4, 5001)
    t_git_inc = git_fetch(url, mirror)
    push_one_commit(remote, "env-05", 5, 5002)
    t0 = time.perf_counter()
    await cache.fetch()
    t_inc2 = time.perf_counter() - t0
    print(f"git fetch cold (CLI):              {t_git_cold * 1000:9.1f} ms")
    print(f"git fetch no-op (CLI):             {t_git_noop * 1000:9.1f} ms")
    print(f"git fetch incremental (CLI):       {t_git_inc * 1000:9.1f} ms  (dulwich again: {t_inc2 * 1000:.1f} ms, "
          f"ratio {min(t_inc, t_inc2) / t_git_inc:.2f}x)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS:                          {rss:9.1f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--branches", type=int, default=10)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--polls", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="driftd-bench-git-"))
    daemon = None
    try:
        remote = root / "srv" / "bench.git"
        remote.parent.mkdir()
        t0 = time.perf_counter()
        generate(remote, args.branches, args.files, max(args.commits, args.branches + 2))
        print(f"repository: {args.branches} branches x {args.files} files, {args.commits} commits "
              f"(generated in {time.perf_counter() - t0:.1f} s)")
        port = free_port()
        daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={remote.parent}",
                                   "--listen=127.0.0.1", f"--port={port}", "--reuseaddr", str(remote.parent)],
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        anyio.run(run, args, root, f"git://127.0.0.1:{port}/bench.git", remote)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    sys.exit(main())
