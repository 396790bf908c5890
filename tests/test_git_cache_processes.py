"""Two processes fetching into one repository cache at once (``driftd run`` and a ``driftd check`` with the
same ``state_dir``), against the sandbox's real git daemon while someone keeps pushing: every fetch succeeds,
every tree is readable, and the cache ends up a consistent mirror of the remote."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from driftd.config import RepositorySettings
from driftd.errors import SourceError
from driftd.sources.git import RepositoryCache
from driftd.sources.git_lock import LOCK_NAME, cache_lock
from tests.test_git_source import CM, Work

pytestmark = [pytest.mark.sandbox]

BRANCHES = [f"env-{i:02d}" for i in range(40)]

# One process: fetch ROUNDS times, after each fetch read every branch's tree (a reader racing the other
# process's fetch, ref updates and repacks). Prints one JSON line: the errors met and the last heads.
WORKER = r"""
import json, sys, time
import anyio
from pathlib import Path
from driftd.config import RepositorySettings
from driftd.errors import SourceError
from driftd.errors import DriftdError
from driftd.sources import git as gitmod

gitmod._MAX_PACKS = 3  # repack often: a repack is the most disruptive write a reader can meet
url, state, start, rounds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

async def main():
    cache = gitmod.RepositoryCache(RepositorySettings(name="envs", url=url, timeout=60), state)
    errors, fetches, trees = [], 0, 0
    while time.time() < start:
        await anyio.sleep(0.001)
    for _ in range(rounds):
        try:
            r = await cache.fetch()
            fetches += 1
            for branch, sha in r.heads.items():
                snap = await cache.read_tree(sha, "kubernetes")
                assert snap.tree is not None and snap.files, (branch, sha)
                trees += 1
        except Exception as e:  # noqa: BLE001  (reported to the test, which fails on any)
            errors.append(f"{type(e).__name__}: {e}")
    print(json.dumps({"errors": errors, "fetches": fetches, "trees": trees, "heads": cache.heads}))

anyio.run(main)
"""


def _push_round(w: Work, n: int) -> None:
    for b in BRANCHES:
        w.git("checkout", "--quiet", "-B", b)
        w.write({"kubernetes/own.yaml": CM.format(name="own", value=f"{b}-{n}")})
        w.git("add", "-A")
        w.git("commit", "--quiet", "-m", f"round {n}")
    w.push(*BRANCHES, force=True)


def test_two_processes_fetch_the_same_cache_concurrently(sandbox, tmp_path: Path) -> None:
    name = f"shared-{uuid.uuid4().hex[:6]}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    w = Work(tmp_path, url)
    w.commit("main", {f"kubernetes/cm-{i:03d}.yaml": CM.format(name=f"cm-{i:03d}", value="1") for i in range(20)})
    for b in BRANCHES:
        w.git("checkout", "--quiet", "-B", b, "main")
    _push_round(w, 0)
    w.push("main")
    state = tmp_path / "state"  # empty: both processes race to create the cache too

    stop = threading.Event()
    pushed = [0]

    def pusher() -> None:  # the remote keeps moving every branch while both processes fetch
        while not stop.is_set():
            pushed[0] += 1
            _push_round(w, pushed[0])

    start = time.time() + 3.0  # both processes begin at the same instant, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(state), str(start), "25"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    t = threading.Thread(target=pusher, daemon=True)
    t.start()
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        stop.set()
        t.join(60)
        for p in procs:
            p.kill()
    results = []
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        assert r["errors"] == []
        assert r["fetches"] == 25
        assert r["trees"] >= 25 * (len(BRANCHES) + 1)
    assert pushed[0] >= 2  # the remote did move during the run

    # The shared cache is a sound repository and, after one more fetch, mirrors the remote exactly.
    cache = RepositoryCache(RepositorySettings(name="envs", url=url, timeout=60), state)
    final = anyio.run(cache.fetch)
    remote = dict(reversed(line.split()) for line in
                  w.git("ls-remote", "--heads", "origin").splitlines())
    assert {f"refs/heads/{b}": sha for b, sha in final.heads.items()} == remote
    local = subprocess.run(["git", "--git-dir", str(cache.path), "for-each-ref", "--format=%(refname) %(objectname)"],
                           capture_output=True, text=True, check=True).stdout
    assert dict(line.split() for line in local.splitlines()) == remote
    fsck = subprocess.run(["git", "--git-dir", str(cache.path), "fsck", "--no-dangling"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr + fsck.stdout
    assert not list((cache.path / "refs").rglob("*.lock"))


HOLDER = ("import sys, time; from pathlib import Path; from driftd.sources.git_lock import cache_lock\n"
          "with cache_lock(Path(sys.argv[1]), timeout=5):\n"
          "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n")


@contextlib.contextmanager
def _holder(directory: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the cache lock (flock is per open file: another process is the real case)."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(seconds)],
                          stdout=subprocess.PIPE, text=True) as p:
        try:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "held"
            yield p
        finally:
            p.kill()


def test_a_held_lock_makes_the_other_process_wait_then_report_busy(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    with _holder(directory, 1.5) as p:
        t0 = time.monotonic()
        with cache_lock(directory, timeout=10):  # waits for the holder to finish, then gets it
            waited = time.monotonic() - t0
        assert waited > 0.5
        assert p.wait(10) == 0
    with _holder(directory, 30) as p, \
            pytest.raises(SourceError, match=rf"busy: another process \(pid {p.pid}\)") as err, \
            cache_lock(directory, timeout=0.3, subject="repository envs"):
        pass
    assert err.value.retryable
    assert (directory / LOCK_NAME).exists()
    # The killed holder left no lock behind (the kernel drops flocks with the process).
    with cache_lock(directory, timeout=1):
        pass
