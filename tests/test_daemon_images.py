"""`driftd run` with image policies, alert mode: an update available and a moved tag are recorded once in the
audit trail and alerted through Alertmanager; the update alert resolves once Git runs the new version."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from registry_support import push_image

from tests.daemon_support import WEB_DEPLOYMENT, DaemonProc, GitRepo, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: versions}
data: {note: "no workload: image references are read from containers"}
---
""" + WEB_DEPLOYMENT


def _alerts(sandbox: Sandbox, name: str, env: str, status: str) -> list[dict[str, Any]]:
    out = []
    for body in sandbox.alerts():
        for a in body.get("alerts", []):
            lab = a.get("labels", {})
            if lab.get("alertname") == name and lab.get("environment") == env and a.get("status") == status:
                out.append(a)
    return out


def test_update_available_and_moved_tag_are_recorded_and_alerted(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    reg, repo_name, envname = sandbox.registry, f"t/img-{tag}", f"img-{tag}"
    image = f"{reg}/{repo_name}"
    push_image(reg, repo_name, "1.0.0")
    ns = f"img-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    try:
        manifest = MANIFEST.replace("IMAGE", f"{image}:1.0.0")
        sandbox.kubectl("create", "-n", ns, "-f", "-", input=manifest)
        git = GitRepo(sandbox, f"img-{tag}.git", tmp_path / "work")
        git.commit({"k8s/app.yaml": manifest})
        state, port = tmp_path / "state", free_port()
        env = {"name": envname, "mode": "alert", "interval": "2s",
               "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"},
               "images": [{"name": "web", "image": image, "semver": ">=1.0.0 <2", "action": "report"}]}
        cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port,
                           envs=[env], registries=[{"host": reg, "insecure": True}], alertmanager=True)
        d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
        try:
            d.wait_checked(envname)
            time.sleep(3)  # a poll or two while up to date: nothing recorded, nothing alerted
            assert not d.events(env=envname, event="image")
            push_image(reg, repo_name, "1.2.0")
            fired = wait_for(lambda: _alerts(sandbox, "DriftdImageUpdateAvailable", envname, "firing"), 30,
                             f"an update alert; log:\n{d.tail()}")
            assert fired[0]["annotations"]["latest"] == "1.2.0"
            assert fired[0]["annotations"]["current"] == "1.0.0"
            assert fired[0]["labels"]["policy"] == "web"
            time.sleep(4)  # more polls: the same finding is recorded once
            ups = [e for e in d.events(env=envname, event="image") if e["reason"].startswith("update_available")]
            assert len(ups) == 1, ups
            assert "1.0.0 -> 1.2.0" in ups[0]["reason"]
            # The tag the environment runs is re-pushed with other content: a moved tag.
            push_image(reg, repo_name, "1.0.0", content="something else")
            moved = wait_for(lambda: _alerts(sandbox, "DriftdImageTagMoved", envname, "firing"), 30,
                             f"a moved-tag alert; log:\n{d.tail()}")
            assert moved[0]["labels"]["tag"] == "1.0.0"
            assert moved[0]["labels"]["severity"] == "critical"
            assert [e for e in d.events(env=envname, event="image") if e["reason"].startswith("tag_moved")]
            # Git moves to the new version (as a reviewed commit would): the update alert resolves.
            git.commit({"k8s/app.yaml": manifest.replace(":1.0.0", ":1.2.0")})
            wait_for(lambda: _alerts(sandbox, "DriftdImageUpdateAvailable", envname, "resolved"), 30,
                     f"the update alert resolved; log:\n{d.tail()}")
            # Alert mode: the cluster was left alone (the new image is drift, reported, not applied).
            live = sandbox.kubectl_json("get", "deployment", "web", "-n", ns)
            assert live["spec"]["template"]["spec"]["containers"][0]["image"] == f"{image}:1.0.0"
        finally:
            assert d.stop() == 0, d.tail()
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_observe_mode_write_back_records_what_it_would_write_and_pushes_nothing(sandbox: Sandbox,
                                                                                  tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    reg, repo_name, envname = sandbox.registry, f"t/obs-{tag}", f"obs-{tag}"
    image = f"{reg}/{repo_name}"
    push_image(reg, repo_name, "1.0.0")
    manifest = MANIFEST.replace('- {name: web, image: "IMAGE"}',
                                '- name: web\n          image: IMAGE # {"driftd.io/image": "web"}').replace(
                                    "IMAGE", f"{image}:1.0.0")
    git = GitRepo(sandbox, f"obs-{tag}.git", tmp_path / "work")
    head = git.commit({"k8s/app.yaml": manifest})
    state, port = tmp_path / "state", free_port()
    env = {"name": envname, "mode": "observe", "interval": "1s",
           "kubernetes": {"cluster": "sandbox", "namespace": f"obs-{tag}", "path": "k8s"},
           "images": [{"name": "web", "image": image, "semver": "^1", "action": "write-back"}]}
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port,
                       envs=[env], registries=[{"host": reg, "insecure": True}])
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked(envname)
        push_image(reg, repo_name, "1.4.0")

        def would() -> list[dict[str, Any]]:
            return [e for e in d.events(env=envname, event="image") if e["reason"].startswith("would_write_back")]

        wait_for(would, 30, lambda: f"a would_write_back event; log:\n{d.tail()}")
        time.sleep(4)  # several more polls: recorded once, and still nothing pushed
        events = would()
        assert len(events) == 1, events
        assert f"{image}:1.0.0 -> {image}:1.4.0" in events[0]["reason"]
        assert events[0]["revision"] == head
        remote = git._git("ls-remote", "--heads", git.url).split()
        assert remote[0::2] == [head]
        assert remote[1::2] == ["refs/heads/main"]
        assert not [e for e in d.events(env=envname, event="image") if e["reason"].startswith("written_back")]
        assert d.environments()[envname]["revision"] == head
    finally:
        assert d.stop() == 0, d.tail()
