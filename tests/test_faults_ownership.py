"""Ownership before prune, against the sandbox's real API server, `driftd run` as a subprocess.

- A Namespace holding objects moves from environment A's path to environment B's (both enforce,
  prune = true, one cluster). Before, A saw it orphaned and deleted it, taking everything in it along.
  Now nothing is deleted (no DELETE ever reaches the API server: the write journal and the objects say
  so) and B adopts it: B reverts an out-of-band change to an object in it.
- An orphaned Namespace is reported but never pruned unless the environment's prune_kinds names it.
- Two environments declare one ConfigMap with different data: both report a conflict naming both, and
  neither reverts it (no ping-pong: no write to it at all).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _writes(state: Path) -> list[dict[str, Any]]:
    c = sqlite3.connect(state / "driftd.db")
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM intents ORDER BY id")]
    finally:
        c.close()


def _ns_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _in(ns: str, doc: dict[str, Any]) -> dict[str, Any]:
    doc["metadata"]["namespace"] = ns
    return doc


def test_namespace_moved_between_environments_is_adopted_not_deleted(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    home = {e: f"own-{e}-{tag}" for e in ("a", "b")}
    moving = f"own-moving-{tag}"
    for ns in home.values():
        sandbox.kubectl("create", "namespace", ns)
    repo = GitRepo(sandbox, f"ownership-{tag}.git", tmp_path / "work")
    # A declares ten ConfigMaps of its own besides the moving namespace, so prune's fraction guard
    # (0.25) does not stop it: only ownership can.
    a_files: dict[str, Any] = {f"a/cm{i}.yaml": configmap(f"a{i}") for i in range(10)}
    a_files["a/moving.yaml"] = [_ns_doc(moving), _in(moving, configmap("inside")),
                                _in(moving, configmap("also-inside"))]
    repo.commit({**a_files, "b/cm.yaml": configmap("b0")})
    envs = [{"name": e, "mode": "enforce", "brakes": {"storm_fraction": 1.0},
             "kubernetes": {"cluster": "sandbox", "namespace": home[e], "path": e, "prune": True,
                            "resync_interval": "2s"}} for e in ("a", "b")]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        wait_for(lambda: (e := d.environments()) and all(e.get(n, {}).get("status") == "in_sync" for n in "ab"),
                 60, lambda: f"both in sync; {d.environments()}\n{d.tail()}")
        assert sandbox.kubectl_json("get", "namespace", moving)["metadata"]["annotations"][
            "driftd.io/environment"] == "a"
        b = d.last_event_id()
        # The move: one commit takes the namespace and its objects out of a/ and into b/.
        repo.commit({"a/moving.yaml": None, "b/moving.yaml": [_ns_doc(moving), _in(moving, configmap("inside")),
                                                              _in(moving, configmap("also-inside"))]})
        wait_for(lambda: all(e.get("revision") == d.environments()["b"]["revision"]
                             for e in d.environments().values()) and len(d.environments()) == 2, 30, "new revision")
        time.sleep(8)  # several resyncs (2 s) of both environments
        ns = sandbox.kubectl_json("get", "namespace", moving)
        assert "deletionTimestamp" not in ns["metadata"], "the moved namespace was deleted"
        assert sandbox.kubectl("-n", moving, "get", "configmap", "inside", check=False).returncode == 0
        deletes = [w for w in _writes(state) if w["operation"].startswith("DELETE")]
        assert not deletes, deletes
        a_events = d.events_after(b, env="a")
        assert not [e for e in a_events if e["drift"] == "orphaned"], a_events
        envs_now = d.environments()
        assert envs_now["a"]["status"] == "in_sync", envs_now["a"]
        assert envs_now["b"]["status"] == "in_sync", envs_now["b"]
        # B adopted it: B reverts an out-of-band change to an object in it.
        sandbox.kubectl("-n", moving, "patch", "configmap", "inside", "-p", '{"data":{"k":"oob"}}')
        wait_for(lambda: sandbox.kubectl_json("-n", moving, "get", "configmap", "inside")["data"]["k"] == "v", 30,
                 lambda: f"B reverted it; log:\n{d.tail()}")
        assert d.events_after(b, env="b", event="reverted", name="inside")
        assert d.alive()
    finally:
        rc = d.stop()
        for ns_name in [*home.values(), moving]:
            sandbox.kubectl("delete", "namespace", ns_name, "--wait=false", check=False)
    assert rc == 0, d.tail()


def test_two_environments_declaring_one_object_is_a_conflict_and_neither_reverts(sandbox: Sandbox,
                                                                                  tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"own-shared-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    sandbox.kubectl("-n", ns, "create", "configmap", "shared", "--from-literal=k=a")
    repo = GitRepo(sandbox, f"conflict-{tag}.git", tmp_path / "work")
    repo.commit({"a/cm.yaml": configmap("shared", {"k": "a"}), "a/own.yaml": configmap("only-a"),
                 "b/cm.yaml": configmap("shared", {"k": "b"}), "b/own.yaml": configmap("only-b")})
    envs = [{"name": e, "mode": "enforce",
             "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": e, "resync_interval": "2s"}}
            for e in ("a", "b")]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        envs_seen = wait_for(lambda: (e := d.environments()) and all(
            "conflict" in (e.get(n, {}).get("error") or "") for n in "ab") and e, 60,
            lambda: f"both report the conflict; {d.environments()}\n{d.tail()}")
        for n in "ab":
            assert envs_seen[n]["status"] == "error", envs_seen[n]
            assert "declared by environments a and b" in envs_seen[n]["error"], envs_seen[n]
        time.sleep(6)  # several resyncs
        path = f"/api/v1/namespaces/{ns}/configmaps/shared"
        assert not [w for w in _writes(state) if w["operation"].endswith(" " + path)], _writes(state)
        assert sandbox.kubectl_json("-n", ns, "get", "configmap", "shared")["data"]["k"] == "a"
        # What each declares alone is still enforced.
        assert sandbox.kubectl("-n", ns, "get", "configmap", "only-b", check=False).returncode == 0
        assert d.alive()
    finally:
        rc = d.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert rc == 0, d.tail()


def test_orphaned_namespace_is_never_pruned_without_prune_kinds(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    home, extra = f"own-home-{tag}", f"own-extra-{tag}"
    sandbox.kubectl("create", "namespace", home)
    repo = GitRepo(sandbox, f"protect-{tag}.git", tmp_path / "work")
    files: dict[str, Any] = {f"k8s/cm{i}.yaml": configmap(f"c{i}") for i in range(10)}
    files["k8s/extra.yaml"] = [_ns_doc(extra), _in(extra, configmap("inside"))]
    repo.commit(files)
    envs = [{"name": "p", "mode": "enforce", "brakes": {"storm_fraction": 1.0},
             "kubernetes": {"cluster": "sandbox", "namespace": home, "path": "k8s", "prune": True,
                            "resync_interval": "2s"}}]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        wait_for(lambda: d.environments().get("p", {}).get("status") == "in_sync", 60,
                 lambda: f"in sync; {d.environments()}\n{d.tail()}")
        repo.commit({"k8s/extra.yaml": None})  # the namespace and its ConfigMap leave Git
        # The ConfigMap is an ordinary orphan: pruned. The Namespace is reported, never deleted.
        wait_for(lambda: sandbox.kubectl("-n", extra, "get", "configmap", "inside", check=False).returncode != 0,
                 30, lambda: f"the ConfigMap pruned; log:\n{d.tail()}")
        skipped = wait_for(lambda: [e for e in d.events(event="skipped", kind="Namespace", name=extra)], 30,
                           lambda: f"the Namespace's prune refused; log:\n{d.tail()}")
        assert "prune_kinds" in skipped[0]["reason"], skipped
        time.sleep(4)
        ns = sandbox.kubectl_json("get", "namespace", extra)
        assert "deletionTimestamp" not in ns["metadata"], "the namespace was pruned"
        assert not [w for w in _writes(state) if w["operation"] == f"DELETE /api/v1/namespaces/{extra}"]
        assert d.alive()
    finally:
        rc = d.stop()
        for n in (home, extra):
            sandbox.kubectl("delete", "namespace", n, "--wait=false", check=False)
    assert rc == 0, d.tail()


def test_an_object_moved_into_a_neighbour_in_error_is_never_pruned(sandbox: Sandbox, tmp_path: Path) -> None:
    """Issue 22 §2: one commit moves a ConfigMap from a/ to b/ and breaks b/ (a typo). B is in error, so its
    last claims (which do not hold the ConfigMap) are no evidence: A must not prune it as orphaned. Once
    b/ is fixed, B adopts it."""
    tag = uuid.uuid4().hex[:6]
    home = {e: f"nb-{e}-{tag}" for e in ("a", "b")}
    for ns in home.values():
        sandbox.kubectl("create", "namespace", ns)
    shared = f"nb-shared-{tag}"
    sandbox.kubectl("create", "namespace", shared)
    repo = GitRepo(sandbox, f"neighbour-{tag}.git", tmp_path / "work")
    files: dict[str, Any] = {f"a/cm{i}.yaml": configmap(f"a{i}") for i in range(10)}
    files["a/moving.yaml"] = _in(shared, configmap("moving"))
    repo.commit({**files, "b/cm.yaml": configmap("b0")})
    envs = [{"name": e, "mode": "enforce", "brakes": {"storm_fraction": 1.0},
             "kubernetes": {"cluster": "sandbox", "namespace": home[e], "path": e, "prune": True,
                            "resync_interval": "2s"}} for e in ("a", "b")]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        wait_for(lambda: (e := d.environments()) and all(e.get(n, {}).get("status") == "in_sync" for n in "ab"),
                 60, lambda: f"both in sync; {d.environments()}\n{d.tail()}")
        repo.commit({"a/moving.yaml": None, "b/moving.yaml": _in(shared, configmap("moving")),
                     "b/typo.yaml": "kind: ConfigMap\nmetadata: {name: [unclosed\n"})
        wait_for(lambda: d.environments().get("b", {}).get("status") == "error", 30,
                 lambda: f"b in error; {d.environments()}\n{d.tail()}")
        # Several resyncs (2 s) of A at the new revision, past the wait for peers' confirmation (PEER_WAIT,
        # 10 s: a peer that does not check again holds nobody up for longer).
        time.sleep(16)
        assert sandbox.kubectl("-n", shared, "get", "configmap", "moving", check=False).returncode == 0, \
            "A pruned an object its neighbour in error may declare"
        deletes = [w for w in _writes(state) if w["operation"].startswith("DELETE")]
        assert not deletes, deletes
        repo.commit({"b/typo.yaml": None})
        wait_for(lambda: (e := d.environments()) and all(e.get(n, {}).get("status") == "in_sync" for n in "ab"),
                 60, lambda: f"both in sync again; {d.environments()}\n{d.tail()}")
        sandbox.kubectl("-n", shared, "patch", "configmap", "moving", "-p", '{"data":{"k":"oob"}}')
        wait_for(lambda: sandbox.kubectl_json("-n", shared, "get", "configmap", "moving")["data"]["k"] == "v", 30,
                 lambda: f"B reverted it; log:\n{d.tail()}")
        assert not [w for w in _writes(state) if w["operation"].startswith("DELETE")]
        assert d.alive()
    finally:
        rc = d.stop()
        for ns_name in [*home.values(), shared]:
            sandbox.kubectl("delete", "namespace", ns_name, "--wait=false", check=False)
    assert rc == 0, d.tail()
