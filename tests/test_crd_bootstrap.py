"""CRDs and resources of those CRDs in one path, tried as a new user would (the CLI, a fresh cluster):
prometheus-operator's CustomResourceDefinitions with a ServiceMonitor, a PodMonitor and a PrometheusRule.

``driftd check`` reports the three custom resources ``missing`` (they cannot exist: their kinds are not
served yet), not as errors; one ``driftd sync`` creates the CRDs, waits until they are Established,
refreshes discovery, then creates the custom resources (Flux's staged apply); ``check`` is then in
sync. Before, the first sync failed with "the API server serves no kind PodMonitor ... (is its CRD
installed?)" and a second one was needed.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.daemon_support import ROOT, GitRepo, write_config
from tests.daemon_support import driftd_json as driftd
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox]

DATA = ROOT / "tests" / "data" / "prometheus-operator"
CRDS = ("servicemonitors", "podmonitors", "prometheusrules")


def _delete_crds(sandbox: Sandbox) -> None:
    sandbox.kubectl("delete", "crd", *(f"{c}.monitoring.coreos.com" for c in CRDS), "--ignore-not-found",
                    "--wait=true", "--timeout=60s", check=False)


def test_crds_and_their_resources_in_one_sync(sandbox: Sandbox, tmp_path: Path) -> None:
    _delete_crds(sandbox)  # a fresh cluster as far as these kinds go
    ns = f"prom-{uuid.uuid4().hex[:6]}"
    sandbox.kubectl("create", "namespace", ns)
    repo = GitRepo(sandbox, f"crds-{uuid.uuid4().hex[:6]}.git", tmp_path / "work")
    repo.commit({"monitoring/crds.yaml": (DATA / "crds.yaml").read_text(),
                 "monitoring/monitors.yaml": (DATA / "monitors.yaml").read_text()})
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=tmp_path / "state",
                       port=free_port(), envs=[{"name": "mon", "mode": "alert",
                                                "kubernetes": {"cluster": "sandbox", "namespace": ns,
                                                               "path": "monitoring"}}])
    try:
        rc, rep = driftd(cfg, "check")
        env = rep["environments"][0]
        assert env["error"] is None, env["error"]
        assert rc == 1
        assert sorted((d["kind"], d["drift"]) for d in env["drifts"]) == [
            ("CustomResourceDefinition", "missing")] * 3 + [
            ("PodMonitor", "missing"), ("PrometheusRule", "missing"), ("ServiceMonitor", "missing")]
        assert {d["namespace"] for d in env["drifts"] if d["kind"] != "CustomResourceDefinition"} == {ns}

        rc, rep = driftd(cfg, "sync", "--env", "mon")
        env = rep["environments"][0]
        assert env["error"] is None, env["error"]
        assert {(d["kind"], d["action"]) for d in env["drifts"]} == {
            ("CustomResourceDefinition", "reverted"), ("PodMonitor", "reverted"), ("PrometheusRule", "reverted"),
            ("ServiceMonitor", "reverted")}, env["drifts"]
        assert rc == 0
        for kind in ("servicemonitor", "podmonitor", "prometheusrule"):
            live = sandbox.kubectl_json("get", kind, "podinfo", "-n", ns)
            assert live["metadata"]["name"] == "podinfo"
        rule = sandbox.kubectl_json("get", "prometheusrule", "podinfo", "-n", ns)
        assert rule["spec"]["groups"][0]["rules"][0]["alert"] == "PodinfoDown"

        rc, rep = driftd(cfg, "check")
        assert (rc, rep["environments"][0]["drifts"]) == (0, []), rep
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        _delete_crds(sandbox)
