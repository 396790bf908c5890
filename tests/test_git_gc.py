"""Garbage collection of the Git cache (issue #16 §3): what force-pushes and deleted branches leave behind
goes, and the cache stays bounded. A real remote pushed to with the git CLI, read with dulwich over file://."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from driftd.sources.git import _cache_bytes
from tests.test_git_source import Work, new_cache
from tests.test_yaml_budgets import bare

MiB = 1 << 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def blob(n: int = MiB) -> bytes:
    return os.urandom(n)  # incompressible: the cache grows by what is pushed


def has(cache_path: Path, sha: str) -> bool:
    from dulwich.repo import Repo  # the test reads the store the way the cache does

    repo = Repo(str(cache_path))
    try:
        return sha.encode() in repo.object_store
    finally:
        repo.close()


@pytest.mark.anyio
async def test_force_pushed_and_deleted_objects_are_collected_and_the_cache_stays_bounded(tmp_path: Path) -> None:
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    base = w.commit("main", {"k/base.bin": blob()})
    w.push("main")
    cache = new_cache(str(remote), tmp_path)
    await cache.fetch()
    live = _cache_bytes(cache.path)
    gone: list[str] = []
    sizes = []
    for i in range(6):
        # rewrite history: a new commit on the base replaces the previous one (force-push)
        w.git("reset", "--quiet", "--hard", base)
        gone.append(w.commit("main", {"k/big.bin": blob()}, message=f"rewrite {i}"))
        w.push("main", force=True)
        # and a branch that comes and goes
        w.git("checkout", "--quiet", "-B", f"tmp{i}", base)
        gone.append(w.commit(f"tmp{i}", {"k/tmp.bin": blob()}))
        w.push(f"tmp{i}")
        await cache.fetch()
        w.git("push", "--quiet", "origin", "--delete", f"tmp{i}")
        w.git("checkout", "--quiet", "main")
        await cache.fetch()
        sizes.append(_cache_bytes(cache.path))
    head = gone[-2]
    assert cache.resolve("main") == head
    assert cache.gc_runs >= 1, sizes
    assert cache.last_gc is not None
    assert cache.last_gc.pruned_objects > 0
    assert cache.last_gc.bytes_after < cache.last_gc.bytes_before
    # everything a collection could see as garbage is gone; what the refs reach is intact
    collected = [sha for sha in gone[:-2] if not has(cache.path, sha)]
    assert len(collected) >= len(gone[:-2]) - 2, "at most the last cycle's garbage may still wait for the next GC"
    assert has(cache.path, head)
    assert has(cache.path, base)
    snap = await cache.read_tree(head, "k")
    assert {f.path for f in snap.files} == {"k/base.bin", "k/big.bin"}
    # bounded: never beyond twice the live size after a collection plus one fetch's worth (2 x 1 MiB pushed)
    live = 2 * MiB + live
    assert max(sizes) <= 2 * live + 2 * MiB + 256 * 1024, (sizes, live)
    # an explicit collection right now leaves about the live size
    after = await anyio.to_thread.run_sync(cache.gc_sync)
    assert after.bytes_after <= live + 256 * 1024, (after, live)
