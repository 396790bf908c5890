"""Which live objects are worth reporting as ``unmanaged``, and which kinds to look at."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...policy.modes import is_disabled

# Kinds listed in watched namespaces to find unmanaged objects (besides the kinds Git declares).
UNMANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"), ("batch/v1", "CronJob"), ("networking.k8s.io/v1", "Ingress"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)
# Kinds whose objects are always written by controllers: never unmanaged.
SYSTEM_KINDS = frozenset({"Event", "Endpoints", "EndpointSlice", "Lease", "Pod", "ReplicaSet",
                          "ControllerRevision", "Job"})


def is_system_object(obj: Mapping[str, Any]) -> bool:
    """Objects the cluster creates by itself in every namespace, or that another object owns."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if kind in SYSTEM_KINDS or meta.get("ownerReferences"):
        return True
    if kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        return True
    if kind == "ConfigMap" and name in ("kube-root-ca.crt", "extension-apiserver-authentication"):
        return True
    if kind == "ServiceAccount" and name == "default":
        return True
    if kind == "Service" and name == "kubernetes" and meta.get("namespace") == "default":
        return True
    return is_disabled(obj)
