"""Prometheus metrics, on driftd's own registry. Label sets stay bounded: no object names in labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

REGISTRY = CollectorRegistry(auto_describe=True)

environment_info = Gauge("driftd_environment_info", "1 per environment, with its mode and status",
                         ["environment", "mode", "status"], registry=REGISTRY)
drifted_resources = Gauge("driftd_drifted_resources", "Drifted resources by kind and drift kind",
                          ["environment", "target", "kind", "drift"], registry=REGISTRY)
managed_resources = Gauge("driftd_managed_resources", "Declared resources by kind",
                          ["environment", "target", "kind"], registry=REGISTRY)
reverts_total = Counter("driftd_reverts_total", "Reverts by result",
                        ["environment", "target", "kind", "result"], registry=REGISTRY)
detection_latency = Histogram("driftd_detection_latency_seconds",
                              "Time from a live change event to the drift being recorded",
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=REGISTRY)
reconcile_duration = Histogram("driftd_reconcile_duration_seconds", "One comparison pass",
                               ["environment", "target"],
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY)
source_last_success = Gauge("driftd_source_last_success_timestamp_seconds", "Last successful fetch",
                            ["repository"], registry=REGISTRY)
source_revision_info = Gauge("driftd_source_revision_info", "Revision each environment is checked at",
                             ["environment", "revision"], registry=REGISTRY)
api_requests = Counter("driftd_api_requests_total", "Calls to live APIs",
                       ["target", "operation", "code"], registry=REGISTRY)
http_connections_open = Gauge("driftd_http_connections_open", "HTTP connections open on daemon.listen",
                              registry=REGISTRY)
http_connections_refused = Counter("driftd_http_connections_refused_total",
                                   "HTTP connections closed on accept because daemon.listen had too many open",
                                   registry=REGISTRY)
alerts_sent = Counter("driftd_alerts_sent_total", "Alerts delivered to Alertmanager", registry=REGISTRY)
alert_outbox_size = Gauge("driftd_alert_outbox_size", "Alerts waiting for delivery", registry=REGISTRY)
declared_checked = Gauge("driftd_declared_resources_checked", "Declared resources a pass compared",
                         ["environment", "target"], registry=REGISTRY)
declared_total = Gauge("driftd_declared_resources", "Declared resources (checked or not)",
                       ["environment", "target"], registry=REGISTRY)
image_update_available = Gauge("driftd_image_update_available",
                               "1 when the environment runs an older version than its image policy's latest",
                               ["environment", "image"], registry=REGISTRY)

# Replicas sharing environments ([coordination]); each replica exports what it holds.
environment_holder = Gauge("driftd_environment_holder",
                           "1 for each environment whose lease this replica holds (label replica: this replica)",
                           ["environment", "replica"], registry=REGISTRY)
replica_members = Gauge("driftd_replica_members", "Live replicas of the group as this replica sees them",
                        registry=REGISTRY)
lease_transitions = Counter("driftd_lease_transitions_total",
                            "Environment leases acquired, released (handed over) or lost (not renewed in time)",
                            ["event"], registry=REGISTRY)
lease_errors = Counter("driftd_lease_errors_total", "Failed lease reads and writes", registry=REGISTRY)

pauses = Gauge("driftd_pauses", "Break-glass pauses holding (driftd pause), by scope: environment or object",
               ["environment", "scope"], registry=REGISTRY)


# Every metric with an ``environment`` label, with its label names in declaration order.
BY_ENVIRONMENT: tuple[tuple[MetricWrapperBase, tuple[str, ...]], ...] = (
    (environment_info, ("environment", "mode", "status")),
    (drifted_resources, ("environment", "target", "kind", "drift")),
    (managed_resources, ("environment", "target", "kind")),
    (reverts_total, ("environment", "target", "kind", "result")),
    (reconcile_duration, ("environment", "target")),
    (source_revision_info, ("environment", "revision")),
    (image_update_available, ("environment", "image")),
    (declared_checked, ("environment", "target")),
    (declared_total, ("environment", "target")),
    (pauses, ("environment", "scope")),
)


def remove_series(metric: MetricWrapperBase, label_names: tuple[str, ...],
                  match: Callable[[Mapping[str, str]], bool]) -> int:
    """Remove every series of ``metric`` whose labels satisfy ``match``; returns how many.
    (prometheus-client's remove_by_labels is newer than the oldest version driftd accepts.)"""
    found = {tuple(s.labels[k] for k in label_names)
             for fam in metric.collect() for s in fam.samples
             if all(k in s.labels for k in label_names) and match(s.labels)}
    for values in found:
        metric.remove(*values)
    return len(found)


def forget_environment(name: str) -> int:
    """Drop every series of environment ``name`` (it left the config): gauges, counters, histograms."""
    return sum(remove_series(m, names, lambda labels: labels["environment"] == name) for m, names in BY_ENVIRONMENT)
webhook_requests = Counter("driftd_webhook_requests_total",
                           "Requests to /hooks/git by provider and result (accepted, ignored, unverified, unknown, "
                           "rate_limited, too_large, bad_request)", ["provider", "result"], registry=REGISTRY)
