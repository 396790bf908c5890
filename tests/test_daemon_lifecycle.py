"""`driftd run` lifecycle on the sandbox: SIGHUP reloads, SIGTERM drains during reverts, kill -9 then restart."""

from __future__ import annotations

import signal
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from registry_support import push_image

from tests.daemon_support import DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _env(name: str, ns: str, mode: str = "alert", **kw: object) -> dict:
    return {"name": name, "mode": mode, "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}, **kw}


def _prep(sandbox: Sandbox, tmp: Path, n_maps: int) -> tuple[GitRepo, str, list[str]]:
    tag = uuid.uuid4().hex[:6]
    ns = f"dl-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    maps = [f"cm{i:03d}" for i in range(n_maps)]
    docs = [configmap(m) for m in maps]
    sandbox.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    repo = GitRepo(sandbox, f"life-{tag}.git", tmp / "work")
    repo.commit({"k8s/app.yaml": docs})
    return repo, ns, maps


def test_sighup_adds_and_removes_environments_and_rejects_invalid_config(sandbox: Sandbox, tmp_path: Path) -> None:
    repo, ns, _ = _prep(sandbox, tmp_path, 3)
    state, port = tmp_path / "state", free_port()
    cfg = tmp_path / "driftd.toml"
    write_config(cfg, sandbox, repo_url=repo.url, state_dir=state, port=port, envs=[_env("a", ns)])
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked("a")
        # b in a namespace of its own: two environments declaring the same objects are a conflict (ownership).
        write_config(cfg, sandbox, repo_url=repo.url, state_dir=state, port=port,
                     envs=[_env("a", ns), _env("b", f"{ns}-b")])
        d.signal(signal.SIGHUP)
        d.wait_checked("a", "b")
        loaded = [e for e in d.logs() if e.get("event") == "desired.loaded"]
        assert [e["env"] for e in loaded].count("a") == 1, "env a was restarted by a reload that did not change it"
        # An invalid file is rejected with its reason; the running config stays.
        good = cfg.read_text()
        cfg.write_text(good + "\n[[environments]]\nname = \"c\"\nmode = \"sideways\"\n")
        d.signal(signal.SIGHUP)
        rej = wait_for(lambda: [e for e in d.logs() if e.get("event") == "config.reload_rejected"], 10, "rejection")
        assert "mode" in rej[0]["reason"]
        assert set(d.environments()) == {"a", "b"}
        write_config(cfg, sandbox, repo_url=repo.url, state_dir=state, port=port, envs=[_env("b", f"{ns}-b")])
        d.signal(signal.SIGHUP)
        wait_for(lambda: set(d.environments()) == {"b"}, 15, "env a removed")
        assert d.alive()
    finally:
        assert d.stop() == 0, d.tail()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_sigterm_during_reverts_drains_and_records_every_change(sandbox: Sandbox, tmp_path: Path) -> None:
    repo, ns, maps = _prep(sandbox, tmp_path, 40)
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port,
                       envs=[_env("e", ns, "enforce", brakes={"storm_min_objects": 1000,
                                                              "max_reverts_per_cycle": 1000})])
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked("e")
        sandbox.kubectl("label", "configmap", "-n", ns, *maps, "oops=1", "--overwrite")
        wait_for(lambda: d.events(event="detected") or d.events(event="reverted") or [
            e for e in d.logs() if e.get("event") == "drift.reverted"], 20, "reverts under way")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.proc.wait(30) if d.proc else None
        took = time.monotonic() - t0
    finally:
        rc2 = d.stop()
    assert rc == 0, d.tail()
    assert rc2 == 0
    assert took < 15 + 2  # daemon.shutdown_timeout in the test config
    live = {m: sandbox.kubectl_json("get", "configmap", m, "-n", ns)["metadata"].get("labels", {}) for m in maps}
    reverted_live = {m for m, labels in live.items() if "oops" not in labels}
    recorded = {e["name"] for e in d.events(event="reverted")}
    # Every change driftd made is in the audit trail; nothing is recorded that did not happen.
    assert reverted_live == recorded, (sorted(reverted_live - recorded), sorted(recorded - reverted_live))
    sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_kill_9_during_a_burst_then_restart_keeps_every_event_exactly_once(sandbox: Sandbox, tmp_path: Path) -> None:
    repo, ns, maps = _prep(sandbox, tmp_path, 30)
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port,
                       envs=[_env("k", ns, "alert")])
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked("k")
        for i, m in enumerate(maps):
            sandbox.kubectl("label", "configmap", m, "-n", ns, f"burst={i}")
            if i == 15:
                wait_for(lambda: d.events(event="detected"), 15, "some drifts recorded")
                before = d.events()
                d.kill9()
                break
        # Restart; the remaining burst happens while it starts up.
        d2 = DaemonProc(cfg, state, port, tmp_path / "driftd2.log").start()
        for m in maps[16:]:
            sandbox.kubectl("label", "configmap", m, "-n", ns, "burst=late")
        d2.wait_checked("k")
        wait_for(lambda: len({e["name"] for e in d2.events(event="detected")}) == len(maps), 30,
                 f"every drift detected; log:\n{d2.tail()}")
        after = d2.events()
        assert d2.stop() == 0
    finally:
        if d.alive():
            d.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    by_id = {e["id"]: e for e in after}
    for e in before:  # everything recorded before the kill is still there, unchanged
        assert by_id.get(e["id"]) == e
    detected = [e["name"] for e in after if e["event"] == "detected"]
    assert sorted(detected) == sorted(maps), "a drift was recorded twice or lost"


def _metrics(d: DaemonProc) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/metrics", timeout=5) as r:
        return r.read().decode()


def _series(text: str, env: str) -> set[str]:
    """Metric names with a series labelled ``environment="env"``."""
    return {line.split("{", 1)[0] for line in text.splitlines()
            if not line.startswith("#") and f'environment="{env}"' in line}


def test_sighup_removing_an_environment_removes_its_metric_series(sandbox: Sandbox, tmp_path: Path) -> None:
    repo, ns, maps = _prep(sandbox, tmp_path, 2)
    # One declared ConfigMap that is not live: a drift, so drifted_resources has series too.
    repo.commit({"k8s/app.yaml": [configmap(m) for m in [*maps, "not-live"]]})
    reg, image_repo = sandbox.registry, f"t/life-{uuid.uuid4().hex[:6]}"
    push_image(reg, image_repo, "1.0.0")
    images = [{"name": "web", "image": f"{reg}/{image_repo}", "semver": ">=1", "action": "report"}]
    state, port = tmp_path / "state", free_port()
    cfg = tmp_path / "driftd.toml"
    regs = [{"host": reg, "insecure": True}]
    write_config(cfg, sandbox, repo_url=repo.url, state_dir=state, port=port, registries=regs,
                 envs=[_env("keep", ns, images=images), _env("gone", f"{ns}-gone", images=images)])
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    expected = {"driftd_environment_info", "driftd_drifted_resources", "driftd_managed_resources",
                "driftd_source_revision_info", "driftd_image_update_available",
                "driftd_reconcile_duration_seconds_bucket", "driftd_reconcile_duration_seconds_count",
                "driftd_reconcile_duration_seconds_sum"}
    try:
        d.wait_checked("keep", "gone")
        for env in ("keep", "gone"):
            wait_for(lambda env=env: expected <= _series(_metrics(d), env), 20,
                     lambda env=env: f"series of {env}: {sorted(_series(_metrics(d), env))}")
        write_config(cfg, sandbox, repo_url=repo.url, state_dir=state, port=port, registries=regs,
                     envs=[_env("keep", ns, images=images)])
        d.signal(signal.SIGHUP)
        wait_for(lambda: set(d.environments()) == {"keep"}, 15, "env gone removed")
        wait_for(lambda: not _series(_metrics(d), "gone"), 10,
                 lambda: f"series left for the removed environment: {sorted(_series(_metrics(d), 'gone'))}")
        time.sleep(3)  # polls and passes go on: nothing brings the removed environment's series back
        text = _metrics(d)
        assert _series(text, "gone") == set()
        assert expected <= _series(text, "keep")
        assert 'driftd_environment_info{environment="keep"' in text
    finally:
        assert d.stop() == 0, d.tail()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
