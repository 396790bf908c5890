"""Plain trees assembled from their directories' results (sources/subtrees.py) give exactly what the loader's
general path gives, over real repositories pushed to with the git CLI and read back with dulwich."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from driftd.sources.loader import DesiredStateLoader, LoadResult
from driftd.sources.yamlsafe import Limits
from tests.test_git_source import CM, Work, bare, env, new_cache

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  template: {{metadata: {{labels: {{app: {name}}}}}}}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _team(n: int, files: int = 4) -> dict[str, str]:
    return {f"kubernetes/team-{n}/app-{i}.yaml": DEPLOY.format(name=f"t{n}-app-{i}") for i in range(files)}


BASE: dict[str, str] = {
    **_team(0), **_team(1), **_team(2),
    # names that sort around a directory's: "team-0.yaml" < "team-0-b/..." < "team-0/..." by full path
    "kubernetes/team-0.yaml": CM.format(name="sorted-before", value="1"),
    "kubernetes/team-0-b/x.yaml": CM.format(name="dash-dir", value="1"),
    "kubernetes/team-0/nested/deep/y.yml": CM.format(name="deep", value="1"),
    "kubernetes/team-0/z.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "json"}}',
    "kubernetes/README.md": "not a manifest",
    "kubernetes/.hidden/skipped.yaml": CM.format(name="hidden", value="1"),
    "kubernetes/cluster/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
    "kubernetes/cluster/list.yaml": "apiVersion: v1\nkind: List\nitems:\n- " +
                                    CM.format(name="item", value="1").replace("\n", "\n  ").rstrip() + "\n",
    "kubernetes/ns/explicit.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  namespace: other\n",
}

# branch -> files changed from BASE (None deletes)
BRANCHES: dict[str, dict[str, str | None]] = {
    "base": {},
    "one-changed": {"kubernetes/team-1/app-0.yaml":
                    DEPLOY.format(name="t1-app-0").replace("replicas: 1", "replicas: 3")},
    "dup-across-dirs": {"kubernetes/team-2/dup.yaml": DEPLOY.format(name="t0-app-1")},
    "dup-inside-dir": {"kubernetes/team-1/dup.yaml": DEPLOY.format(name="t1-app-2")},
    "dup-at-root": {"kubernetes/zz.yaml": CM.format(name="dash-dir", value="2")},
    "bad-yaml": {"kubernetes/team-2/bad.yaml": "a: [1,\n"},
    "bad-name": {"kubernetes/team-1/bad-name.yaml": CM.format(name="Not_A_Name", value="1")},
    "missing-fields": {"kubernetes/team-2/m.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
    "duplicate-key": {"kubernetes/team-0/dk.yaml": "apiVersion: v1\nkind: ConfigMap\nkind: Secret\n"
                                                   "metadata: {name: dk}\n"},
    "aliases": {"kubernetes/team-1/anchors.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: al}\n"
                                                  "data: &d {a: '1'}\nbinaryData: *d\n"},
    "kustomize": {"kubernetes/team-2/kustomization.yaml": "resources: [app-0.yaml]\n"},
    "helm-like-name": {"kubernetes/team-1/notes.txt": "x"},
    "deleted-dir": {f"kubernetes/team-2/app-{i}.yaml": None for i in range(4)},
}


def _shape(r: LoadResult) -> tuple[Any, ...]:
    objects = [(o.key, o.source, o.sensitive, o.body) for o in r.state.kubernetes] if r.state else None
    return r.ok, r.error, [str(p) for p in r.problems], objects


async def _repo(tmp_path: Path) -> tuple[Path, list[str]]:
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    w.commit("base", BASE)
    names = ["base"]
    for name, change in BRANCHES.items():
        if name == "base":
            continue
        w.git("checkout", "--quiet", "-B", name, "base")
        for path, data in change.items():
            if data is None:
                w.git("rm", "--quiet", path)
        w.commit(name, {p: d for p, d in change.items() if d is not None})
        names.append(name)
    w.push(*names)
    return remote, names


async def _load_all(remote: Path, tmp_path: Path, names: list[str], sub: str, *, reuse: bool,
                    limits: Limits | None = None, repo_limits: Limits | None = None
                    ) -> tuple[dict[str, tuple[Any, ...]], DesiredStateLoader]:
    cache = new_cache(str(remote), tmp_path / sub, **({"limits": repo_limits} if repo_limits else {}))
    loader = DesiredStateLoader({"envs": cache}, reuse_directories=reuse, **({"limits": limits} if limits else {}))
    await cache.fetch()
    out = {}
    for n in names:
        out[n] = _shape(await loader.load(env(n, n)))
    return out, loader


@pytest.mark.anyio
async def test_reused_directories_give_what_the_general_path_gives(tmp_path):
    remote, names = await _repo(tmp_path)
    fast, loader = await _load_all(remote, tmp_path, names, "fast", reuse=True)
    slow, _ = await _load_all(remote, tmp_path, names, "slow", reuse=False)
    for n in names:
        assert fast[n] == slow[n], n
    # the cases above are what they claim to be
    assert fast["base"][0]
    assert len(fast["base"][3]) == 19
    assert "declared twice" in fast["dup-across-dirs"][1]
    assert "declared twice" in fast["dup-inside-dir"][1]
    assert "declared twice" in fast["dup-at-root"][1]
    assert "invalid YAML" in fast["bad-yaml"][1]
    assert "duplicate key" in fast["duplicate-key"][1]
    assert fast["kustomize"][0]  # rendered by kustomize, through the general path
    assert fast["deleted-dir"][0]
    assert len(fast["deleted-dir"][3]) == 15
    # and directories were reused: 12 branches after the first share most of theirs
    assert loader.directories_reused >= 3 * (len(names) - 2)


@pytest.mark.anyio
async def test_an_invalid_name_is_reported_in_every_environment_that_shares_its_file(tmp_path):
    """The object memo used to drop it for every load after the first (it went to the set, not the memo)."""
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    w.commit("a", {"kubernetes/bad.yaml": CM.format(name="Not_A_Name", value="1")})
    w.commit("b", {"kubernetes/other.yaml": CM.format(name="other", value="1")})
    w.push("a", "b")
    for reuse in (True, False):
        cache = new_cache(str(remote), tmp_path / str(reuse))
        loader = DesiredStateLoader({"envs": cache}, reuse_directories=reuse)
        await cache.fetch()
        for name in ("a", "b"):
            r = await loader.load(env(name, name))
            assert not r.ok, (reuse, name)
            assert "Not_A_Name" in r.error


@pytest.mark.anyio
async def test_tree_budget_and_file_limits_refuse_as_before(tmp_path):
    remote, names = await _repo(tmp_path)
    # the tree budget runs out in the third directory; the repository's file limit at 20 files
    for i, (limits, repo_limits) in enumerate([(Limits(max_tree_nodes=300), None), (None, Limits(max_files=20)),
                                               (Limits(max_tree_documents=10), None)]):
        fast, _ = await _load_all(remote, tmp_path, names, f"fast{i}", reuse=True, limits=limits,
                                  repo_limits=repo_limits)
        slow, _ = await _load_all(remote, tmp_path, names, f"slow{i}", reuse=False, limits=limits,
                                  repo_limits=repo_limits)
        for n in names:
            assert fast[n] == slow[n], (i, n)
        assert not fast["base"][0], i
        assert not fast["one-changed"][0], i
        assert any(word in fast["base"][1] for word in ("nodes", "files", "documents")), fast["base"][1]


@pytest.mark.anyio
async def test_symlinks_and_sops_files_take_the_general_path(tmp_path):
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    w.commit("link", _team(0))
    os.symlink("app-0.yaml", w.dir / "kubernetes" / "team-0" / "link.yaml")
    w.commit("link", {})
    w.git("checkout", "--quiet", "-B", "sops", "HEAD~1")
    w.commit("sops", {"kubernetes/team-0/s.yaml": CM.format(name="s", value="ENC[x]") +
                      "sops:\n  mac: ENC[y]\n  age: []\n"})
    w.push("link", "sops")
    for reuse in (True, False):
        cache = new_cache(str(remote), tmp_path / str(reuse))
        loader = DesiredStateLoader({"envs": cache}, reuse_directories=reuse)
        await cache.fetch()
        link = await loader.load(env("link", "link"))
        assert not link.ok, reuse
        assert "symbolic links are refused" in link.error, reuse
        sops = await loader.load(env("sops", "sops"))
        assert not sops.ok, reuse
        assert "s.yaml" in sops.error, (reuse, sops.error)


@pytest.mark.anyio
async def test_the_shared_open_repository_survives_another_writer_repacking_the_cache(tmp_path):
    """Reads between fetches go through one open repository; another process's fetch and GC (new packs, old
    ones removed) into the same cache directory must not break them."""
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    w.commit("prod", _team(0))
    w.push("prod")
    cache = new_cache(str(remote), tmp_path)
    loader = DesiredStateLoader({"envs": cache})
    await cache.fetch()
    first = await loader.load(env("prod", "prod"))
    assert first.ok
    packs_then = set((cache.path / "objects" / "pack").glob("*.pack"))
    other = new_cache(str(remote), tmp_path)  # the same directory, as a second driftd process would open it
    for i in range(3):
        w.commit("prod", {f"kubernetes/team-1/app-{i}.yaml": DEPLOY.format(name=f"more-{i}")})
        w.push("prod")
        await other.fetch()
        other.gc_sync()
    packs_now = set((cache.path / "objects" / "pack").glob("*.pack"))
    assert not packs_now & packs_then  # repacked by the other writer: the packs the shared repository opened are gone
    # reads through the shared repository (no fetch of its own since): the old commit, and the new one
    fresh = DesiredStateLoader({"envs": cache})
    old = await fresh.load_revision(env("prod", "prod"), first.revision)
    assert old.ok
    assert _shape(old) == _shape(first)
    new_commit = other.resolve("prod")
    new = await fresh.load_revision(env("prod", "prod"), new_commit)
    assert new.ok
    assert len(new.state.kubernetes) == 7
    await cache.fetch()
    again = await loader.load(env("prod", "prod"))
    assert again.ok
    assert again.revision == new_commit
    assert len(again.state.kubernetes) == 7


@pytest.mark.anyio
async def test_environments_loaded_at_once_give_what_they_give_one_by_one(tmp_path):
    """The daemon loads environments concurrently: their walks share the caches from several worker threads."""
    remote, names = await _repo(tmp_path)
    slow, _ = await _load_all(remote, tmp_path, names, "slow", reuse=False)
    cache = new_cache(str(remote), tmp_path / "fast")
    # small caches, so entries are evicted while other walks read them
    loader = DesiredStateLoader({"envs": cache}, blob_cache_size=20, tree_cache_size=2)
    await cache.fetch()
    fast: dict[str, tuple[Any, ...]] = {}

    async def one(n: str) -> None:
        fast[n] = _shape(await loader.load(env(n, n)))

    async with anyio.create_task_group() as tg:
        for n in names:
            tg.start_soon(one, n)
    assert fast == slow
