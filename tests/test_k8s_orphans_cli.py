"""``orphaned`` end to end through the CLI: `driftd sync` records the inventory in the state store,
a commit removes an object from Git, `driftd check` (a subprocess, read-only) reports it orphaned,
and `driftd sync` with prune deletes it and moves the inventory on.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from driftd.model import ResourceKey, TargetKind
from driftd.state import StateStore
from tests.daemon_support import GitRepo, configmap, write_config
from tests.daemon_support import driftd_json as driftd
from tests.sandbox.procs import free_port

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.k8s2.example.com}
spec:
  group: k8s2.example.com
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
"""


def drifts(report: Any) -> list[tuple[str, str, str]]:
    env = report["environments"][0]
    return sorted((d["kind"], d["name"], d["drift"]) for d in env.get("drifts") or ())


def inventory(state: Path) -> set[str]:
    """The environment's Kubernetes inventory, read through the state store's own API."""
    async def read() -> frozenset[ResourceKey]:
        async with StateStore.open(state) as store:
            return await store.inventory("orph", TargetKind.KUBERNETES)
    return {f"{k.kind}/{k.namespace}/{k.name}" for k in anyio.run(read)}


def test_orphaned_through_driftd_check_and_pruned_by_sync(sandbox: Any, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    sandbox.kubectl("apply", "-f", "-", input=CRD)
    sandbox.kubectl("wait", "--for=condition=Established", "crd/widgets.k8s2.example.com", "--timeout=30s")
    widget = f"w-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(sandbox, f"orphans-{uuid.uuid4().hex[:6]}.git", tmp_path / "work")
    cr = {"apiVersion": "k8s2.example.com/v1", "kind": "Widget", "metadata": {"name": widget}, "spec": {"size": 1}}
    repo.commit({"app/app.yaml": [configmap("keep"), configmap("old"), cr]})
    state = tmp_path / "state"

    def config(prune: bool) -> Path:
        return write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=free_port(),
                            envs=[{"name": "orph", "mode": "observe",
                                   "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "app",
                                                  "prune": prune, "prune_max_fraction": 1.0}}])

    try:
        cfg = config(prune=False)
        _, rep = driftd(cfg, "sync", "--env", "orph")  # (its exit code is the engine's business)
        assert {(d["name"], d["drift"], d["action"]) for d in rep["environments"][0]["drifts"]} == {
            ("keep", "missing", "reverted"), ("old", "missing", "reverted"), (widget, "missing", "reverted")}
        # The cluster-scoped custom resource is inventoried as the cluster names it (no namespace, though
        # the loader, which cannot know its scope, gave it the default one): informer events match it.
        assert inventory(state) == {f"ConfigMap/{ns}/keep", f"ConfigMap/{ns}/old", f"Widget//{widget}"}
        rc, rep = driftd(cfg, "check")
        # In sync: the cluster-scoped custom resource is not mistaken for an orphan.
        assert (rc, drifts(rep)) == (0, []), rep

        repo.commit({"app/app.yaml": [configmap("keep"), cr]}, message="drop old")
        before = (state / "driftd.db").stat().st_mtime_ns
        rc, rep = driftd(cfg, "check")
        assert rc == 1, rep
        assert drifts(rep) == [("ConfigMap", "old", "orphaned")]
        assert (state / "driftd.db").stat().st_mtime_ns == before  # check writes nothing

        _, rep = driftd(cfg, "sync", "--env", "orph")  # prune is off: reported, kept, still inventoried
        assert [(d["name"], d["action"]) for d in rep["environments"][0]["drifts"]] == [("old", "skipped")]
        assert sandbox.kubectl("get", "configmap", "old", "-n", ns, check=False).returncode == 0
        assert f"ConfigMap/{ns}/old" in inventory(state)
        rc, rep = driftd(cfg, "check")
        assert drifts(rep) == [("ConfigMap", "old", "orphaned")]

        cfg = config(prune=True)
        _, rep = driftd(cfg, "sync", "--env", "orph")
        assert [(d["name"], d["action"]) for d in rep["environments"][0]["drifts"]] == [("old", "reverted")], rep
        assert sandbox.kubectl("get", "configmap", "old", "-n", ns, check=False).returncode != 0
        assert inventory(state) == {f"ConfigMap/{ns}/keep", f"Widget//{widget}"}
        rc, rep = driftd(cfg, "check")
        assert (rc, drifts(rep)) == (0, []), rep

        repo.commit({"app/app.yaml": [configmap("keep")]}, message="drop the widget")
        rc, rep = driftd(cfg, "check")
        assert drifts(rep) == [("Widget", widget, "orphaned")], rep
        assert not rep["environments"][0]["drifts"][0].get("namespace"), rep  # named as the cluster does
    finally:
        sandbox.kubectl("delete", "widget", widget, "--ignore-not-found", check=False)


@pytest.fixture(autouse=True)
def _no_kubeconfig_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
