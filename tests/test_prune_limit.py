"""Issue 22 §1 as an operator met it: 200 ConfigMaps declared in an enforce environment with
``prune = true`` and the default ``prune_max_fraction`` (0.25); one commit removes 60 of them (30%).
Before, the running daemon deleted all 60: ``max_reverts_per_cycle`` (50) cut the batch to a share
that fit under the limit, and each later pass or watch event deleted the rest. Now nothing is
deleted, the hold is a recorded safety brake, and raising the limit (SIGHUP) lets them go.
Real kube-apiserver, ``driftd run`` as a subprocess, changes made with kubectl."""

from __future__ import annotations

import signal
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


def _deletes(state: Path) -> list[str]:
    c = sqlite3.connect(state / "driftd.db")
    try:
        return [r[0] for r in c.execute("SELECT operation FROM intents WHERE operation LIKE 'DELETE %'")]
    finally:
        c.close()


def _count(sandbox: Sandbox, ns: str) -> int:
    return len(sandbox.kubectl_json("-n", ns, "get", "configmaps", "-l", "set")["items"])


def test_a_thirty_percent_cut_is_held_under_a_25_percent_limit(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"prune-limit-{tag}"
    sandbox.kubectl("create", "namespace", ns)

    def cms(prefix: str, n: int) -> list[dict[str, Any]]:
        docs = [configmap(f"{prefix}{i:03}") for i in range(n)]
        for d in docs:
            d["metadata"]["labels"] = {"set": prefix}
        return docs

    repo = GitRepo(sandbox, f"prune-limit-{tag}.git", tmp_path / "work")
    repo.commit({"k8s/kept.yaml": cms("kept", 140), "k8s/gone.yaml": cms("gone", 60)})
    envs = [{"name": "p", "mode": "enforce", "brakes": {"storm_fraction": 1.0},
             "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s", "prune": True,
                            "resync_interval": "2s"}}]
    state, port = tmp_path / "state", free_port()
    cfg_path = tmp_path / "driftd.toml"
    write_config(cfg_path, sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg_path, state, port, tmp_path / "driftd.log").start()
    try:
        # Created 50 a cycle (the revert budget), then in sync.
        wait_for(lambda: d.environments().get("p", {}).get("status") == "in_sync", 120,
                 lambda: f"in sync; {d.environments()}\n{d.tail()}")
        assert _count(sandbox, ns) == 200
        repo.commit({"k8s/gone.yaml": None})
        # Full passes every 2 s, and a watch event on each of a few orphans (an edit by hand): none of it
        # may trickle a deletion out.
        wait_for(lambda: d.events(event="skipped", name="gone000"), 60, lambda: f"the orphans held; log:\n{d.tail()}")
        for i in range(5):
            sandbox.kubectl("-n", ns, "annotate", "configmap", f"gone{i:03}", f"touched=t{i}", "--overwrite")
        time.sleep(8)
        assert _count(sandbox, ns) == 200, "orphans were deleted past prune_max_fraction"
        assert _deletes(state) == []
        brakes = [e for e in d.events(event="brake") if "prune_limit" in (e["reason"] or "")]
        assert brakes, d.tail()
        assert "60 of 200 managed objects" in brakes[0]["reason"], brakes[0]
        skipped = d.events(event="skipped", name="gone000")
        assert skipped, d.tail()
        assert skipped[-1]["reason"].startswith("prune_limit:"), skipped[-1]
        # The operator confirms by raising the limit for this environment, and reloads.
        envs[0]["kubernetes"]["prune_max_fraction"] = 0.35
        write_config(cfg_path, sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
        d.signal(signal.SIGHUP)
        wait_for(lambda: _count(sandbox, ns) == 140, 90, lambda: f"the 60 pruned after confirmation; log:\n{d.tail()}")
        assert len(_deletes(state)) == 60
        assert d.alive()
    finally:
        rc = d.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert rc == 0, d.tail()
