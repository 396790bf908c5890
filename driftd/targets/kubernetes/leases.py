"""Replicas' leases as ``coordination.k8s.io/v1`` Leases in one namespace (implements
``engine.protocols.LeaseStore``).

One LIST per poll reads every lease of the group (label ``driftd.io/group``); each write is a PUT
carrying the ``resourceVersion`` that was read, so two replicas racing for the same lease cannot
both win: the loser gets 409 Conflict, answered here as None. The lease's ``holderIdentity`` is the
replica, ``renewTime`` is informational (expiry is judged by observation, see ``policy.leases``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ...config import ClusterSettings, CoordinationSettings
from ...policy.leases import LeaseKind, LeaseRecord, lease_name
from .client import Conflict, KubeClient, NotFound, connect

GROUP_LABEL = "driftd.io/group"
KIND_LABEL = "driftd.io/lease"
SUBJECT_ANNOTATION = "driftd.io/subject"  # the exact environment name / identity (names are sanitized)
RESOURCE = "leases.coordination.k8s.io"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeLeaseStore:
    def __init__(self, client: KubeClient, namespace: str, group: str, *, own_client: bool = True) -> None:
        self.client = client
        self.namespace = namespace
        self.group = group
        self._own = own_client
        self._base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    @classmethod
    async def open(cls, settings: CoordinationSettings, cluster: ClusterSettings) -> KubeLeaseStore:
        return cls(await connect(cluster), settings.namespace, settings.group)

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()

    async def list(self) -> Sequence[LeaseRecord]:
        data = await self.client.request("GET", self._base, verb="list", resource=RESOURCE,
                                         query={"labelSelector": f"{GROUP_LABEL}={self.group}"},
                                         subject=f"leases in namespace {self.namespace}", request_timeout=10)
        out = []
        for item in data.get("items") or ():
            rec = _record(item)
            if rec is not None:
                out.append(rec)
        return out

    async def create(self, kind: LeaseKind, subject: str, *, holder: str, duration: float,
                     annotations: Mapping[str, str]) -> LeaseRecord | None:
        name = lease_name(self.group, kind, subject)
        now = _now()
        body = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace,
                         "labels": {GROUP_LABEL: self.group, KIND_LABEL: str(kind)},
                         "annotations": {**annotations, SUBJECT_ANNOTATION: subject}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(duration)),
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        }
        try:
            item = await self.client.request("POST", self._base, verb="create", resource=RESOURCE, body=body,
                                             subject=f"lease {self.namespace}/{name}", request_timeout=10)
        except Conflict:  # AlreadyExists: another replica created it first
            return None
        return _record(item)

    async def update(self, lease: LeaseRecord, *, holder: str, duration: float,
                     annotations: Mapping[str, str] | None = None) -> LeaseRecord | None:
        now = _now()
        ann = dict(lease.annotations if annotations is None else annotations)
        ann[SUBJECT_ANNOTATION] = lease.subject
        spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(duration)),
                                "renewTime": now, "leaseTransitions": lease.transitions}
        if holder != lease.holder:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = lease.transitions + 1
        body = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease.name, "namespace": self.namespace, "resourceVersion": lease.version,
                         "labels": {GROUP_LABEL: self.group, KIND_LABEL: str(lease.kind)}, "annotations": ann},
            "spec": spec,
        }
        try:
            item = await self.client.request("PUT", f"{self._base}/{lease.name}", verb="update", resource=RESOURCE,
                                             body=body, subject=f"lease {self.namespace}/{lease.name}",
                                             request_timeout=10)
        except (Conflict, NotFound):  # written (or deleted) by someone else since we read it
            return None
        return _record(item)


def _record(item: Mapping[str, Any]) -> LeaseRecord | None:
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    labels = meta.get("labels") or {}
    try:
        kind = LeaseKind(labels.get(KIND_LABEL, ""))
    except ValueError:
        return None  # not one of ours
    ann = dict(meta.get("annotations") or {})
    subject = ann.pop(SUBJECT_ANNOTATION, "")
    if not subject:
        return None
    return LeaseRecord(name=str(meta.get("name", "")), kind=kind, subject=subject,
                       holder=str(spec.get("holderIdentity") or ""),
                       duration=float(spec.get("leaseDurationSeconds") or 15),
                       version=str(meta.get("resourceVersion", "")), annotations=ann,
                       transitions=int(spec.get("leaseTransitions") or 0))
