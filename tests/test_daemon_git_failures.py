"""`driftd run` when Git fails: a deleted branch, a git server down then back.

While an environment's desired state cannot be read it reports ``error`` with the reason, keeps its
last good revision and does nothing to the cluster: no revert, no prune (a deleted branch is never
read as "everything was removed"). Another environment of the same repository is not affected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.daemon_support import ROOT, DaemonProc, GitRepo, configmap, deployment, wait_for, write_config
from tests.sandbox import Sandbox, start_git, stop_git
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@dataclass
class Setup:
    sandbox: Sandbox
    daemon: DaemonProc
    repo: GitRepo
    ns: dict[str, str]
    revision: dict[str, str]
    tmp: Path


def _docs() -> list[dict[str, object]]:
    return [deployment("web", 2), configmap("settings")]


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("daemon-git")
    tag = uuid.uuid4().hex[:6]
    ns = {n: f"dg-{n}-{tag}" for n in ("doomed", "steady")}
    repo = GitRepo(sandbox, f"gitfail-{tag}.git", tmp / "work")
    revision = {}
    for n, namespace in ns.items():
        sandbox.kubectl("create", "namespace", namespace)
        sandbox.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(_docs()))
        revision[n] = repo.commit({"k8s/app.yaml": _docs()}, branch=n)
    # prune = true everywhere: if a deleted branch were read as an empty desired state, the
    # inventoried objects would be orphans and get deleted. A 2 s resync: triggers keep coming while in error.
    envs = [{"name": n, "mode": "enforce", "branch": n,
             "kubernetes": {"cluster": "sandbox", "namespace": namespace, "path": "k8s", "prune": True,
                            "resync_interval": "2s"}}
            for n, namespace in ns.items()]
    state, port = tmp / "state", free_port()
    cfg = write_config(tmp / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        d.wait_checked(*ns)
        yield Setup(sandbox, d, repo, ns, revision, tmp)
    finally:
        assert d.stop() == 0, d.tail()
        for namespace in ns.values():
            sandbox.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def replicas(s: Setup, env: str) -> int:
    return int(s.sandbox.kubectl_json("get", "deployment", "web", "-n", s.ns[env])["spec"]["replicas"])


def check(s: Setup) -> tuple[int, dict]:
    """`driftd check -o json` as a subprocess, with its own state_dir (the daemon's stays the daemon's)."""
    cfg = s.tmp / "check.toml"
    cfg.write_text(s.daemon.config.read_text().replace(str(s.daemon.state_dir), str(s.tmp / "check-state")))
    out = subprocess.run([sys.executable, "-m", "driftd", "check", "-c", str(cfg), "-o", "json"],
                         capture_output=True, text=True, timeout=120, cwd=str(ROOT),
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out.returncode, json.loads(out.stdout)


def test_deleted_branch_puts_only_its_environment_in_error_and_prunes_nothing(setup: Setup) -> None:
    d = setup.daemon
    b = setup.daemon.last_event_id()
    setup.repo.delete_branch("doomed")
    env = wait_for(lambda: (e := d.environments()["doomed"])["status"] == "error" and e, 20,
                   f"doomed in error; log:\n{d.tail()}")
    assert "branch 'doomed' does not exist" in env["error"]
    assert f"last good revision {setup.revision['doomed'][:12]}" in env["error"]
    assert env["revision"] == setup.revision["doomed"]  # the last good revision is remembered
    # Out-of-band changes in both environments: only the healthy one is reverted.
    setup.sandbox.kubectl("scale", "deployment", "web", "-n", setup.ns["doomed"], "--replicas=4")
    setup.sandbox.kubectl("scale", "deployment", "web", "-n", setup.ns["steady"], "--replicas=5")
    wait_for(lambda: replicas(setup, "steady") == 2, 20, f"steady reverted; log:\n{d.tail()}")
    time.sleep(3)  # several repository polls (1 s) and informer events later
    assert replicas(setup, "doomed") == 4, "an environment in error acted on the cluster"
    for kind in ("configmap/settings", "deployment/web"):
        got = setup.sandbox.kubectl("get", kind, "-n", setup.ns["doomed"], check=False)
        assert got.returncode == 0, f"{kind} was pruned after its branch was deleted"
    doomed = setup.daemon.events_after(b, env="doomed")
    assert not [e for e in doomed if e["event"] in ("reverted", "revert_failed", "detected")], doomed
    assert not [e for e in doomed if e["drift"] == "orphaned"], doomed
    assert d.environments()["steady"]["status"] == "in_sync"
    assert d.environments()["doomed"]["status"] == "error"
    # `driftd check` says the same: exit 2, the reason in the JSON, the other environment fine.
    code, report = check(setup)
    assert code == 2, report
    by_name = {e["name"]: e for e in report["environments"]}
    assert by_name["doomed"]["status"] == "error"
    assert "branch 'doomed' does not exist" in by_name["doomed"]["error"]
    assert by_name["steady"]["status"] == "in_sync"

    # The branch comes back: the environment recovers, and only now is the scale reverted.
    setup.repo.push_branch("doomed")
    wait_for(lambda: d.environments()["doomed"]["status"] != "error", 20, f"doomed recovered; log:\n{d.tail()}")
    wait_for(lambda: replicas(setup, "doomed") == 2, 20, "doomed reverted after recovery")
    assert setup.daemon.events_after(b, env="doomed", event="reverted")


@pytest.mark.usefixtures("sandbox_faults")
def test_git_server_down_then_back(setup: Setup) -> None:
    d = setup.daemon
    wait_for(lambda: all(e["status"] == "in_sync" for e in d.environments().values()), 20,
             lambda: f"all in sync: {d.environments()}")
    b = setup.daemon.last_event_id()
    stop_git(setup.sandbox)
    try:
        envs = wait_for(lambda: (e := d.environments()) and all(x["status"] == "error" for x in e.values()) and e,
                        30, f"every environment of the repository in error; log:\n{d.tail()}")
        for name, env in envs.items():
            assert "cannot fetch repository repo" in env["error"], env
            assert env["revision"] == setup.revision[name]
            assert f"last good revision {setup.revision[name][:12]}" in env["error"]
        setup.sandbox.kubectl("scale", "deployment", "web", "-n", setup.ns["steady"], "--replicas=3")
        time.sleep(2)
        assert replicas(setup, "steady") == 3, "reverted while Git was unreadable"
        assert not setup.daemon.events_after(b, event="reverted")
        code, report = check(setup)
        assert code == 2
        assert all(e["status"] == "error" for e in report["environments"])
    finally:
        start_git(setup.sandbox)
    # Back: both recover at the next poll (backoff is capped well below the test's patience).
    wait_for(lambda: all(e["status"] != "error" for e in d.environments().values()), 60,
             f"recovered; log:\n{d.tail()}")
    wait_for(lambda: replicas(setup, "steady") == 2, 20, "reverted once Git is back")
    assert d.alive()
