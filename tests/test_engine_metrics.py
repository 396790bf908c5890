"""The engine's gauges follow the report: a drift reverted in this pass is no longer counted as drifted."""

from __future__ import annotations

from driftd import metrics
from driftd.config import EnvironmentSettings, KubernetesEnvSettings
from driftd.engine.reconciler import EnvRuntime, forget_metrics, update_metrics
from driftd.model import Action, Drift, DriftKind, EnvironmentReport, ResourceKey, Status, TargetKind


def _value(env: str, kind: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "driftd_drifted_resources",
        {"environment": env, "target": "kubernetes", "kind": kind, "drift": "modified"},
    )


def test_reverted_drift_is_not_counted_as_drifted() -> None:
    env = EnvironmentSettings(name="metrics-env", repository="r", branch="b",
                              kubernetes=KubernetesEnvSettings(cluster="c"))
    rt = EnvRuntime(settings=env)
    reverted = Drift(ResourceKey(TargetKind.KUBERNETES, "Deployment", "web", "ns", "apps/v1"),
                     DriftKind.MODIFIED, action=Action.REVERTED)
    left = Drift(ResourceKey(TargetKind.KUBERNETES, "ConfigMap", "cfg", "ns", "v1"), DriftKind.MODIFIED)
    try:
        update_metrics(rt, EnvironmentReport(name=env.name, revision="abc", status=Status.DRIFTED,
                                             drifts=(reverted, left)))
        assert _value(env.name, "ConfigMap") == 1.0
        assert _value(env.name, "Deployment") is None
        update_metrics(rt, EnvironmentReport(name=env.name, revision="abc", status=Status.IN_SYNC,
                                             drifts=(reverted,)))
        assert _value(env.name, "ConfigMap") is None
    finally:
        forget_metrics(env.name)
