"""Helm releases, SOPS files and signed commits against the sandbox: real kube-apiserver, git daemon and
Alertmanager, driftd as a subprocess (CLI and daemon), changes made with kubectl as an operator would.

- Helm (podinfo + kube-state-metrics): after a sync zero drift; kubectl changes to rendered objects are
  detected with who made them, reverted, and objects a values change removes are pruned.
- SOPS: encrypted Secret and ConfigMap synced; out-of-band changes detected with every value masked in
  reports, the audit trail and CLI output.
- Signed commits: the daemon acts on a signed head, refuses an unsigned one on top (error
  `untrusted revision <sha>: ...`, DriftdEnvironmentError at Alertmanager, nothing applied from it), and
  resumes on the next signed commit.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from driftd.model import ClusterInfo
from driftd.sources.helm import HelmRenderer
from driftd.sources.loader import DesiredStateLoader
from tests.daemon_support import DaemonProc, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port
from tests.test_cli_e2e import Cli
from tests.test_signatures import SshKey
from tests.test_sops import PASSWORD, TOKEN, age_key, configmap, encrypt, secret
from tests.tools_support import CORPUS_HELM, Work, cache_for, env_settings, helm, tools_dir

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tools_on_path() -> Iterator[None]:
    """driftd finds helm and sops on the PATH, as in production; the CLI subprocesses inherit it."""
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{tools_dir()}:{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old




def test_helm_release_sync_zero_drift_then_kubectl_changes_detected(sandbox: Sandbox, tmp_path: Path,
                                                                    tools_on_path: None) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"helm-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    try:
        sandbox.new_bare_repo(f"helm-{tag}.git")
        url = sandbox.git_repo_url(f"helm-{tag}.git")
        work = Work(tmp_path)
        work.git("remote", "set-url", "origin", url)
        work.copy(CORPUS_HELM / "podinfo", "charts/podinfo")
        work.copy(CORPUS_HELM / "kube-state-metrics", "charts/kube-state-metrics")
        work.write({
            "k8s/driftd-helm.yaml": f"""releases:
  - name: podinfo
    chart: ../charts/podinfo
    values_files: [podinfo-prod.yaml]
  - name: ksm-{tag}
    chart: ../charts/kube-state-metrics
""",
            "k8s/podinfo-prod.yaml": (CORPUS_HELM / "podinfo" / "values-prod.yaml").read_text(),
        })
        work.commit()
        envs = [{"name": "helm", "mode": "alert",
                 "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s", "prune": True,
                                "prune_max_fraction": 0.5}}]  # 3 of 11 objects go at once
        cli = Cli(write_config(tmp_path / "driftd.toml", sandbox, repo_url=url, state_dir=tmp_path / "state",
                               port=free_port(), envs=envs))
        # Nothing deployed yet: every rendered object is missing; sync creates them all.
        code, report = cli.json("check", "--env", "helm")
        env = report["environments"][0]
        assert code == 1, env
        assert {d["drift"] for d in env["drifts"]} == {"missing"}
        assert len(env["drifts"]) == 11
        code, report = cli.json("sync", "--env", "helm")
        assert code == 0, report
        # After the sync: zero drift.
        code, report = cli.json("check", "--env", "helm")
        env = report["environments"][0]
        assert (code, env["status"], env["drifts"]) == (0, "in_sync", []), env
        assert env["resources"] == 11

        # kubectl changes to rendered objects are detected, with who made them.
        sandbox.kubectl("-n", ns, "set", "image", "deployment/podinfo-redis", "redis=redis:7")
        sandbox.kubectl("label", "clusterrole", f"ksm-{tag}-kube-state-metrics", "extra=1")
        code, report = cli.json("check", "--env", "helm")
        env = report["environments"][0]
        assert code == 1
        got = {(d["kind"], d["name"]): d for d in env["drifts"]}
        assert set(got) == {("Deployment", "podinfo-redis"), ("ClusterRole", f"ksm-{tag}-kube-state-metrics")}
        change = got[("Deployment", "podinfo-redis")]["changes"][0]
        assert change["path"].endswith("/image")
        assert change["actual"] == "redis:7"
        assert "kubectl" in (got[("Deployment", "podinfo-redis")]["changed_by"] or "")

        # Reverted like any other object.
        code, report = cli.json("sync", "--env", "helm")
        assert code == 0, report
        live = sandbox.kubectl_json("get", "deployment", "podinfo-redis", "-n", ns)
        assert live["spec"]["template"]["spec"]["containers"][0]["image"].startswith("redis:8")

        # Redis switched off in Git: its objects are orphaned and pruned (prune = true).
        work.commit({"k8s/podinfo-prod.yaml": (CORPUS_HELM / "podinfo" / "values-prod.yaml").read_text()
                     .replace("redis:\n  enabled: true", "redis:\n  enabled: false")})
        code, report = cli.json("check", "--env", "helm")
        env = report["environments"][0]
        orphans = sorted((d["kind"], d["name"]) for d in env["drifts"] if d["drift"] == "orphaned")
        assert orphans == [("ConfigMap", "podinfo-redis"), ("Deployment", "podinfo-redis"),
                           ("Service", "podinfo-redis")], env
        code, report = cli.json("sync", "--env", "helm")
        assert code == 0, report
        gone = sandbox.kubectl("get", "deployment", "podinfo-redis", "-n", ns, check=False)
        assert gone.returncode != 0
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        sandbox.kubectl("delete", "clusterrole,clusterrolebinding", f"ksm-{tag}-kube-state-metrics", check=False)


def test_sops_objects_synced_drift_detected_values_masked(sandbox: Sandbox, tmp_path: Path,
                                                         tools_on_path: None) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"sops-{tag}"
    key = tmp_path / "prod.agekey"
    recipient = age_key(key)
    sandbox.kubectl("create", "namespace", ns)
    try:
        sandbox.new_bare_repo(f"sops-{tag}.git")
        url = sandbox.git_repo_url(f"sops-{tag}.git")
        work = Work(tmp_path)
        work.git("remote", "set-url", "origin", url)
        work.commit({"k8s/db.yaml": encrypt(secret("db"), recipient, tmp_path),
                     "k8s/settings.yaml": encrypt(configmap("settings"), recipient, tmp_path, regex="^data$")})
        envs = [{"name": "prod", "mode": "alert", "sops_age_key_file": str(key),
                 "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}}]
        cli = Cli(write_config(tmp_path / "driftd.toml", sandbox, repo_url=url, state_dir=tmp_path / "state",
                               port=free_port(), envs=envs))
        code, report = cli.json("sync", "--env", "prod")
        assert code == 0, report
        live = sandbox.kubectl_json("get", "secret", "db", "-n", ns)
        assert base64.b64decode(live["data"]["password"]).decode() == PASSWORD
        code, report = cli.json("check", "--env", "prod")
        assert (code, report["environments"][0]["drifts"]) == (0, [])

        # Out-of-band changes to both: detected, and neither old nor new values shown anywhere.
        sandbox.kubectl("-n", ns, "patch", "secret", "db", "-p",
                        '{"stringData": {"password": "changed-by-hand"}}')
        sandbox.kubectl("-n", ns, "patch", "configmap", "settings", "-p", '{"data": {"token": "changed-too"}}')
        code, out, err = cli("check", "--env", "prod", "-o", "json")
        assert code == 1, err
        env = yaml.safe_load(out)["environments"][0]
        assert sorted(d["name"] for d in env["drifts"]) == ["db", "settings"]
        for d in env["drifts"]:
            for c in d["changes"]:
                assert c["expected"] in ("(redacted)", None), c
                assert c["actual"] in ("(redacted)", None), c
        code, text, err2 = cli("check", "--env", "prod")
        code3, hist, err3 = cli("sync", "--env", "prod")
        code4, hist_out, _ = cli("history", "--env", "prod", "-o", "json")
        state = b"".join(f.read_bytes() for f in (tmp_path / "state").rglob("*")
                          if f.is_file() and "/git/" not in str(f))  # the audit trail; not the repo cache
        everything = (out + err + text + err2 + hist + err3 + hist_out).encode() + state
        assert b"/data" in state or b"/stringData" in state, "the audit trail recorded the drifts"
        for value in (PASSWORD, TOKEN, "changed-by-hand", "changed-too"):
            assert value.encode() not in everything, value
        assert code3 == 0
        live = sandbox.kubectl_json("get", "configmap", "settings", "-n", ns)
        assert live["data"]["token"] == TOKEN
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _am_alerts(am: str, env_name: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"filter": f'environment="{env_name}"'})
    with urllib.request.urlopen(f"{am}/api/v2/alerts?{q}", timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  level: {v}\n"


def test_daemon_acts_only_on_signed_revisions_and_alerts_on_an_untrusted_one(sandbox: Sandbox,
                                                                              tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    name, ns = f"signed-{tag}", f"signed-{tag}"
    ann = SshKey(tmp_path, "ann")
    sandbox.kubectl("create", "namespace", ns)
    sandbox.new_bare_repo(f"signed-{tag}.git")
    url = sandbox.git_repo_url(f"signed-{tag}.git")
    work = Work(tmp_path)
    work.git("remote", "set-url", "origin", url)
    good = work.commit({"k8s/app.yaml": CM.format(v="info")}, sign=ann.sign())
    port = free_port()
    config = write_config(tmp_path / "driftd.toml", sandbox, repo_url=url, state_dir=tmp_path / "state", port=port,
                          alertmanager=True, envs=[{
                              "name": name, "mode": "enforce",
                              "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"},
                              "signatures": {"trusted_key_files": [str(ann.public)]}}])
    # DriftdEnvironmentError waits error_grace (default 2 minutes) before firing: shorten it here.
    config.write_text(config.read_text().replace("[alertmanager]\n", "[alertmanager]\nerror_grace = \"1s\"\n"))
    d = DaemonProc(config, tmp_path / "state", port, tmp_path / "driftd.log").start()
    try:
        # Signed by the trusted key: acted on (enforce creates the ConfigMap).
        env = d.wait_checked(name, timeout=90)[name]
        assert env["revision"] == good
        wait_for(lambda: sandbox.kubectl("get", "configmap", "app", "-n", ns, check=False).returncode == 0, 60,
                 "ConfigMap created from the signed revision")

        # An unsigned commit on top: not read, not applied; error and an alert saying why.
        bad = work.commit({"k8s/app.yaml": CM.format(v="debug")})
        want = f"untrusted revision {bad}: the commit is not signed"
        env = wait_for(lambda: (e := d.environments().get(name)) and want in (e.get("error") or "") and e, 60,
                       lambda: f"untrusted revision reported; log tail:\n{d.tail()}")
        assert env["status"] == "error"
        assert env["revision"] == good, "stays on the last verified revision"
        alerts = wait_for(lambda: [a for a in _am_alerts(sandbox.alertmanager, name)
                                   if a["labels"].get("alertname") == "DriftdEnvironmentError"], 60,
                          "DriftdEnvironmentError at Alertmanager")
        assert want in alerts[0]["annotations"]["description"]
        assert sandbox.kubectl_json("get", "configmap", "app", "-n", ns)["data"]["level"] == "info"
        assert any(r.get("event") == "desired.untrusted_revision" and r.get("revision") == bad for r in d.logs())

        # Signed again on top: acted on, the error clears.
        fixed = work.commit({"k8s/app.yaml": CM.format(v="warn")}, sign=ann.sign())
        wait_for(lambda: (e := d.environments().get(name)) and e["revision"] == fixed and e["status"] != "error", 60,
                 lambda: f"signed revision picked up; log tail:\n{d.tail()}")
        wait_for(lambda: sandbox.kubectl_json("get", "configmap", "app", "-n", ns)["data"]["level"] == "warn", 60,
                 "the signed revision enforced")
    finally:
        d.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.anyio
async def test_chart_from_an_oci_registry(sandbox: Sandbox, tmp_path: Path) -> None:
    """helm push to the sandbox's registry (distribution, plain HTTP), then a release naming oci://...:
    rendered, and cached by reference and version."""
    tag = uuid.uuid4().hex[:6]
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    await anyio.run_process([helm(), "package", str(CORPUS_HELM / "podinfo"), "-d", str(tmp_path)], env=env)
    await anyio.run_process([helm(), "push", str(tmp_path / "podinfo-6.14.1.tgz"),
                             f"oci://{sandbox.registry}/charts-{tag}", "--plain-http"], env=env)
    work = Work(tmp_path)
    work.commit({"k8s/driftd-helm.yaml": f"releases:\n  - name: oci\n    chart: oci://{sandbox.registry}/charts-{tag}/"
                 "podinfo\n    version: 6.14.1\n    plain_http: true\n"})
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    loader = DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm()))

    async def info() -> ClusterInfo:
        return ClusterInfo("v1.34.4")

    r = await loader.load(env_settings(), cluster=info)
    assert r.state is not None, r.error
    assert sorted(o.key.kind for o in r.state.kubernetes) == ["Deployment", "Service"]
    work.commit({"k8s/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
    await cache.fetch()
    assert (await loader.load(env_settings(), cluster=info)).ok
    assert loader.helm.renders == 1
