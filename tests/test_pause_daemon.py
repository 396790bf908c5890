"""Break-glass pause with ``driftd run`` as a real subprocess against the sandbox: while the environment
is paused (``driftd pause``, another process) a ``kubectl scale`` is not reverted; after ``driftd resume``,
or when the pause expires by itself, it is. The pause shows in the API and the metric meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.daemon_support import ROOT, DaemonProc, GitRepo, deployment, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@dataclass
class Setup:
    sandbox: Sandbox
    daemon: DaemonProc
    ns: str
    config: Path


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("pause")
    tag = uuid.uuid4().hex[:6]
    ns = f"pause-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    sandbox.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(deployment("web", 2)))
    repo = GitRepo(sandbox, f"pause-{tag}.git", tmp / "work")
    repo.commit({"k8s/app.yaml": [deployment("web", 2)]})
    state, port = tmp / "state", free_port()
    # A long resync: only the pause's own trigger (or an event) can make the revert happen promptly.
    envs = [{"name": "prod", "mode": "enforce",
             "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s", "resync_interval": "10m"}}]
    cfg = write_config(tmp / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        d.wait_checked("prod")
        yield Setup(sandbox, d, ns, cfg)
    finally:
        rc = d.stop()
        assert rc == 0, d.tail()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def driftd(s: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "driftd", *args, "-c", str(s.config)], capture_output=True,
                          text=True, env=env, cwd=str(ROOT), timeout=60)


def replicas(s: Setup) -> int:
    return int(s.sandbox.kubectl_json("get", "deployment", "web", "-n", s.ns)["spec"]["replicas"])


def metric(s: Setup, line_start: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.daemon.port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_paused_environment_does_not_revert_until_resumed(setup: Setup) -> None:
    s = setup
    out = driftd(s, "pause", "--env", "prod", "--for", "1h", "--reason", "INC-42 failover")
    assert out.returncode == 0, out.stderr
    env = wait_for(lambda: (e := s.daemon.environments()["prod"]).get("pauses") and e, 30,
                   lambda: f"the pause in the API; log:\n{s.daemon.tail()}")
    assert env["pauses"][0]["reason"] == "INC-42 failover"
    assert env["mode"] == "observe"
    # The API reads the runtime; the metric is set when the pass the pause triggered publishes.
    wait_for(lambda: metric(s, 'driftd_pauses{environment="prod",scope="environment"}') == 1.0, 30, "the metric")

    before = s.daemon.last_event_id()
    s.sandbox.kubectl("scale", "deployment", "web", "-n", s.ns, "--replicas=5")
    wait_for(lambda: s.daemon.events_after(before, env="prod", event="detected"), 40,
             lambda: f"the drift detected; log:\n{s.daemon.tail()}")
    d = wait_for(lambda: next((d for d in s.daemon.environments()["prod"]["drifts"] if d["name"] == "web"), None), 20,
                 lambda: f"the drift in the API: {s.daemon.environments()}")
    assert d["action"] == "reported"
    assert d["reason"].startswith("paused until"), d
    time.sleep(3)  # a few passes' worth: still not reverted
    assert replicas(s) == 5
    assert not s.daemon.events_after(before, env="prod", event="reverted")

    out = driftd(s, "resume", "--env", "prod")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: replicas(s) == 2, 40, lambda: f"replicas back to 2 after resume; log:\n{s.daemon.tail()}")
    assert s.daemon.events_after(before, env="prod", event="reverted")
    assert [e["actor"] for e in s.daemon.events_after(before, env="prod", event="resumed")][0].startswith("cli:")
    wait_for(lambda: "pauses" not in s.daemon.environments()["prod"], 20, "the pause gone from the API")
    wait_for(lambda: metric(s, 'driftd_pauses{environment="prod",scope="environment"}') == 0.0, 30, "metric at 0")


def test_pause_expires_by_itself(setup: Setup) -> None:
    s = setup
    out = driftd(s, "pause", "--env", "prod", "--object", "Deployment/" + s.ns + "/web", "--for", "12s",
                 "--reason", "short")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: s.daemon.environments()["prod"].get("pauses"), 30, "the object pause in the API")
    before = s.daemon.last_event_id()
    s.sandbox.kubectl("scale", "deployment", "web", "-n", s.ns, "--replicas=4")
    wait_for(lambda: s.daemon.events_after(before, env="prod", event="detected"), 40, "the drift detected")
    assert replicas(s) == 4
    # The pause ends by itself: the daemon notices, records it and runs a full pass that reverts.
    wait_for(lambda: replicas(s) == 2, 40, lambda: f"replicas back to 2 after expiry; log:\n{s.daemon.tail()}")
    resumed = s.daemon.events_after(before, env="prod", event="resumed")
    assert resumed
    assert resumed[0]["actor"] == "driftd"
    assert "expired" in resumed[0]["reason"]
