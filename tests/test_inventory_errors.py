"""The inventory moves on with per-object errors: an object with a lasting error does not freeze it,
so an object added and later removed from Git is still reported orphaned; an old key whose orphan
status a pass could not determine is kept; a desired state that failed to load never touches it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from driftd.config import EnvironmentSettings, KubernetesEnvSettings
from driftd.engine.reconciler import EnvRuntime, Reconciler
from driftd.model import DesiredObject, DesiredState, Drift, PassKind, ResourceKey, TargetKind, TargetResult
from driftd.state import StateStore
from tests.daemon_support import GitRepo, configmap, write_config
from tests.sandbox.procs import free_port
from tests.test_k8s_orphans_cli import driftd, drifts, inventory


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_kubeconfig_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)


def test_added_then_removed_is_orphaned_while_another_object_keeps_failing(
        sandbox: Any, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    # Live and valid; Git's version has a data key the API server refuses (its dry run fails every pass).
    sandbox.kubectl("create", "configmap", "bad", "-n", ns, "--from-literal=ok=1")
    bad = configmap("bad", {"not a valid key!": "x"})
    repo = GitRepo(sandbox, f"inv-{uuid.uuid4().hex[:6]}.git", tmp_path / "work")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=free_port(),
                       envs=[{"name": "orph", "mode": "observe",
                              "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "app"}}])

    repo.commit({"app/app.yaml": [configmap("keep"), bad]})
    _, rep = driftd(cfg, "sync", "--env", "orph")
    assert rep["environments"][0]["status"] == "error", rep
    assert "bad" in rep["environments"][0]["error"], rep
    assert inventory(state) == {f"ConfigMap/{ns}/keep", f"ConfigMap/{ns}/bad"}

    repo.commit({"app/app.yaml": [configmap("keep"), bad, configmap("added")]}, message="add")
    _, rep = driftd(cfg, "sync", "--env", "orph")
    assert ("ConfigMap", "added", "missing") in drifts(rep), rep
    assert sandbox.kubectl("get", "configmap", "added", "-n", ns, check=False).returncode == 0
    assert f"ConfigMap/{ns}/added" in inventory(state)

    repo.commit({"app/app.yaml": [configmap("keep"), bad]}, message="remove added")
    _, rep = driftd(cfg, "check")
    assert drifts(rep) == [("ConfigMap", "added", "orphaned")], rep
    assert "bad" in rep["environments"][0]["error"]


class FakeTarget:
    """A target whose verdict the test sets: only the reconciler's inventory rule is under test."""

    kind = TargetKind.KUBERNETES

    def __init__(self, result: TargetResult) -> None:
        self.result = result
        self.inventories: list[frozenset[ResourceKey]] = []

    async def check(self, env: EnvironmentSettings, desired: DesiredState, *,
                    inventory: frozenset[ResourceKey]) -> TargetResult:
        self.inventories.append(inventory)
        return self.result

    async def revert(self, env: EnvironmentSettings, desired: DesiredState, drifts: Sequence[Drift], *,
                     dry_run: bool = False) -> tuple[Drift, ...]:
        return ()


def _key(name: str) -> ResourceKey:
    return ResourceKey(TargetKind.KUBERNETES, "ConfigMap", name, "ns", "v1")


def _desired(*names: str) -> DesiredState:
    return DesiredState("rev", tuple(DesiredObject(_key(n), configmap(n), "app.yaml") for n in names))


@pytest.mark.anyio
async def test_undetermined_old_keys_are_kept_and_a_failed_load_changes_nothing(tmp_path: Path) -> None:
    env = EnvironmentSettings(name="e", repository="r", branch="main",
                              kubernetes=KubernetesEnvSettings(cluster="c", namespace="ns"))
    now = datetime(2024, 1, 1, tzinfo=UTC)
    async with StateStore.open(tmp_path) as store:
        await store.record_pass("e", TargetKind.KUBERNETES, "old", now, (),
                                inventory=frozenset({_key("a"), _key("gone"), _key("unknown")}))
        rec = Reconciler(store, clock=lambda: now)
        rt = EnvRuntime(env)
        rt.set_desired(_desired("a", "new"))
        target = FakeTarget(TargetResult(TargetKind.KUBERNETES, resources=2,
                                         errors=("ConfigMap unknown: cannot tell whether it is orphaned",),
                                         undetermined=frozenset({_key("unknown")})))
        await rec.pass_target(rt, target, pass_kind=PassKind.RUN)
        assert await store.inventory("e", TargetKind.KUBERNETES) == {_key("a"), _key("new"), _key("unknown")}

        rt.desired_error = "cannot load the desired state"
        rt.desired = _desired("other")
        await rec.pass_target(rt, target, pass_kind=PassKind.RUN)
        assert await store.inventory("e", TargetKind.KUBERNETES) == {_key("a"), _key("new"), _key("unknown")}
