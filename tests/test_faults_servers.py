"""The fault suite: real servers stopped, restarted, changed behind driftd's back, while `driftd run` works.

Each test asserts that nothing is lost (every write journaled with an outcome, and the journal agrees
with what the API server answered, observed through tests/fault_proxy.py) and that the daemon never
exits on its own. They stop and restart sandbox servers, so they use ``sandbox_faults``: skipped on a
shared sandbox unless DRIFTD_SANDBOX_FAULTS=1 (``make test`` runs its own sandbox).
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.sandbox import Sandbox, start_component, start_git, stop_component, stop_git
from tests.sandbox.procs import free_port
from tests.test_faults_audit import Env, N, _drift_all, _in_sync, check_journal, env, intents

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
__all__ = ["env"]  # the fixture, shared with test_faults_audit


def _settled(e: Env, d: DaemonProc, timeout: float = 90) -> None:
    wait_for(lambda: _in_sync(e) == N, timeout, lambda: f"all {N} back in sync; log:\n{d.tail()}")
    wait_for(lambda: d.environments().get("burst", {}).get("status") == "in_sync", 60,
             lambda: f"burst in sync; {d.environments()}\n{d.tail()}")


@pytest.mark.usefixtures("sandbox_faults")
def test_sigterm_during_a_burst_of_reverts(env: Env) -> None:
    """SIGTERM mid-burst: exit 0 within shutdown_timeout (15 s), every started write with an outcome."""
    d = DaemonProc(env.cfg, env.state, env.port, env.log).start()
    d.wait_checked("burst")
    env.proxy.write_delay = 0.25
    _drift_all(env, "oob")
    wait_for(lambda: len(env.proxy.writes) >= 5, 60, lambda: f"reverts under way; log:\n{d.tail()}")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc is not None
    rc = d.proc.wait(30)
    took = time.monotonic() - t0
    d.stop()  # already exited: only closes the log file it was writing to
    assert rc == 0, d.tail()
    assert took < 15 + 2, f"took {took:.1f}s"
    time.sleep(1.0)  # writes the proxy held back reach the server now
    rows = intents(env.state)
    assert rows
    assert all(r["outcome"] in ("done", "failed", "cancelled") for r in rows), [r for r in rows if not r["outcome"]]
    check_journal(list(env.proxy.writes), rows)
    assert not [x for x in d.logs() if x.get("event") in ("env.crashed", "write.interrupted")]


@pytest.mark.usefixtures("sandbox_faults")
def test_kube_apiserver_killed_mid_pass_and_restarted(env: Env, sandbox: Sandbox) -> None:
    d = DaemonProc(env.cfg, env.state, env.port, env.log).start()
    try:
        d.wait_checked("burst")
        env.proxy.write_delay = 0.2
        _drift_all(env, "oob")
        wait_for(lambda: len(env.proxy.writes) >= 5, 60, lambda: f"reverts under way; log:\n{d.tail()}")
        stop_component(sandbox, "kube-apiserver")
        time.sleep(3)
        assert d.alive(), d.tail()
        start_component(sandbox, "kube-apiserver")
        env.proxy.write_delay = 0.0
        _settled(env, d)
        assert d.alive()
        rows = intents(env.state)
        assert all(r["outcome"] is not None for r in rows), [r for r in rows if r["outcome"] is None]
        check_journal(list(env.proxy.writes), rows)
    finally:
        assert d.stop() == 0, d.tail()


@pytest.mark.usefixtures("sandbox_faults")
def test_etcd_restarted(env: Env, sandbox: Sandbox) -> None:
    d = DaemonProc(env.cfg, env.state, env.port, env.log).start()
    try:
        d.wait_checked("burst")
        stop_component(sandbox, "etcd")
        time.sleep(3)
        assert d.alive(), d.tail()
        start_component(sandbox, "etcd")
        wait_for(lambda: sandbox.kubectl("get", "--raw", "/readyz", check=False).returncode == 0, 60,
                 "the API server ready again")
        _drift_all(env, "after-etcd")
        _settled(env, d)
        rows = intents(env.state)
        assert all(r["outcome"] is not None for r in rows)
        check_journal(list(env.proxy.writes), rows)
    finally:
        assert d.stop() == 0, d.tail()


@pytest.mark.usefixtures("sandbox_faults")
def test_git_server_down_then_back_with_a_force_push_meanwhile(sandbox: Sandbox, tmp_path: Path,
                                                               k8s_namespace: str) -> None:
    tag = uuid.uuid4().hex[:6]
    repo = GitRepo(sandbox, f"faults-git-{tag}.git", tmp_path / "work")
    first = repo.commit({"k8s/cm.yaml": configmap("settings", {"k": "one"})})
    envs = [{"name": "g", "mode": "enforce",
             "kubernetes": {"cluster": "sandbox", "namespace": k8s_namespace, "path": "k8s", "resync_interval": "2s"}}]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        wait_for(lambda: d.environments().get("g", {}).get("revision") == first, 60, lambda: d.tail())
        stop_git(sandbox)
        try:
            wait_for(lambda: d.environments()["g"]["status"] == "error", 30, lambda: f"in error; {d.tail()}")
            # A force-push while the server is down: history rewritten on the server's repository directly.
            bare = Path(sandbox.git_root) / f"faults-git-{tag}.git"
            w = repo.work
            (w / "k8s" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
                                               "data: {k: rewritten}\n")
            subprocess.run(["git", "-C", str(w), "commit", "-q", "--amend", "-am", "rewritten"], check=True)
            subprocess.run(["git", "-C", str(w), "push", "-q", "-f", str(bare), "HEAD:refs/heads/main"], check=True)
            rewritten = subprocess.run(["git", "-C", str(w), "rev-parse", "HEAD"], check=True, capture_output=True,
                                       text=True).stdout.strip()
            time.sleep(2)
            assert d.alive()
        finally:
            start_git(sandbox)
        wait_for(lambda: d.environments()["g"].get("revision") == rewritten, 90,
                 lambda: f"the force-pushed revision loaded; {d.environments()}\n{d.tail()}")
        wait_for(lambda: sandbox.kubectl_json("-n", k8s_namespace, "get", "configmap", "settings")["data"]["k"]
                 == "rewritten", 30, "applied")
        assert d.environments()["g"]["status"] == "in_sync"
        assert all(r["outcome"] == "done" for r in intents(state)), intents(state)
    finally:
        assert d.stop() == 0, d.tail()
