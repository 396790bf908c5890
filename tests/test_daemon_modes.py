"""`driftd run` as a real subprocess against the sandbox: modes, enforce windows, dry run, per-object override.

One daemon runs five environments (one namespace each) to keep the suite fast; each test scales its
own Deployment with kubectl, as an operator would, and reads the audit trail and the live object.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.daemon_support import DaemonProc, GitRepo, deployment, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@dataclass
class Setup:
    sandbox: Sandbox
    daemon: DaemonProc
    ns: dict[str, str]


ENVS = {
    "enforce": {"mode": "enforce"},
    "alert": {"mode": "alert"},
    # A window that opened at 00:00 on 1 January lasts one minute: closed at any time the test runs
    # (unless run within that minute).
    "window": {"mode": "enforce",
               "enforce_windows": [{"schedule": "0 0 1 1 *", "duration": "1m", "timezone": "Europe/Paris"}]},
    "dryrun": {"mode": "enforce", "dry_run": True},
    "annotated": {"mode": "enforce"},
}


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("daemon-modes")
    tag = uuid.uuid4().hex[:6]
    ns = {name: f"dm-{name}-{tag}" for name in ENVS}
    for n in ns.values():
        sandbox.kubectl("create", "namespace", n)
    repo = GitRepo(sandbox, f"modes-{tag}.git", tmp / "work")
    files = {}
    for name in ENVS:
        ann = {"driftd.io/mode": "observe"} if name == "annotated" else None
        files[f"{name}/app.yaml"] = [deployment("web", 2, ann)]
        sandbox.kubectl("create", "-n", ns[name], "-f", "-",
                        input=__import__("yaml").safe_dump(deployment("web", 2, ann)))
    repo.commit(files)
    envs = [{"name": name, **settings, "kubernetes": {"cluster": "sandbox", "namespace": ns[name], "path": name}}
            for name, settings in ENVS.items()]
    state = tmp / "state"
    port = free_port()
    cfg = write_config(tmp / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        d.wait_checked(*ENVS)
        yield Setup(sandbox, d, ns)
    finally:
        rc = d.stop()
        assert rc == 0, d.tail()
        for n in ns.values():
            sandbox.kubectl("delete", "namespace", n, "--wait=false", check=False)


def replicas(s: Setup, env: str) -> int:
    return int(s.sandbox.kubectl_json("get", "deployment", "web", "-n", s.ns[env])["spec"]["replicas"])


def scale(s: Setup, env: str, n: int) -> int:
    """Scale as an operator would; returns the last event id before, to read only what follows."""
    before = s.daemon.last_event_id()
    s.sandbox.kubectl("scale", "deployment", "web", "-n", s.ns[env], f"--replicas={n}")
    return before


def test_enforce_reverts_a_kubectl_scale_and_records_it(setup: Setup) -> None:
    assert not setup.daemon.events(env="enforce"), "in sync at start"
    b = scale(setup, "enforce", 5)
    wait_for(lambda: setup.daemon.events_after(b, env="enforce", event="reverted"), 20,
             f"a reverted event; log:\n{setup.daemon.tail()}")
    wait_for(lambda: replicas(setup, "enforce") == 2, 10, "replicas back to 2")
    evs = setup.daemon.events_after(b, env="enforce", name="web")
    kinds = [e["event"] for e in evs]
    assert kinds[:2] == ["detected", "reverted"]
    assert "/spec/replicas" in evs[0]["changes"]
    wait_for(lambda: "resolved" in [e["event"] for e in setup.daemon.events_after(b, env="enforce", name="web")], 15,
             "the drift resolved after the revert")


def test_alert_mode_records_and_leaves_it(setup: Setup) -> None:
    b = scale(setup, "alert", 4)
    wait_for(lambda: setup.daemon.events_after(b, env="alert", event="detected"), 20, "a detected event")
    wait_for(lambda: any(d["name"] == "web" for d in setup.daemon.environments()["alert"]["drifts"]), 10,
             "the drift in the status view")
    assert replicas(setup, "alert") == 4
    assert not setup.daemon.events_after(b, env="alert", event="reverted")
    env = setup.daemon.environments()["alert"]
    assert env["status"] == "drifted"


def test_outside_enforce_window_is_not_reverted(setup: Setup) -> None:
    b = scale(setup, "window", 6)
    wait_for(lambda: setup.daemon.events_after(b, env="window", event="detected"), 20, "a detected event")
    env = wait_for(lambda: (e := setup.daemon.environments()["window"]) and e["drifts"] and e, 10, "drift in view")
    assert env["mode"] == "alert"  # enforce outside its window behaves as alert
    assert replicas(setup, "window") == 6
    assert not setup.daemon.events_after(b, env="window", event="reverted")


def test_dry_run_records_would_revert(setup: Setup) -> None:
    b = scale(setup, "dryrun", 3)
    evs = wait_for(lambda: setup.daemon.events_after(b, env="dryrun", event="would_revert"), 20, "a would_revert event")
    assert evs[0]["name"] == "web"
    assert replicas(setup, "dryrun") == 3
    assert not setup.daemon.events_after(b, env="dryrun", event="reverted")


def test_observe_annotation_wins_over_enforce_environment(setup: Setup) -> None:
    b = scale(setup, "annotated", 7)
    wait_for(lambda: setup.daemon.events_after(b, env="annotated", event="detected"), 20, "a detected event")
    assert replicas(setup, "annotated") == 7
    assert not setup.daemon.events_after(b, env="annotated", event="reverted")
    d = next(d for d in setup.daemon.environments()["annotated"]["drifts"] if d["name"] == "web")
    assert d["action"] == "reported"
