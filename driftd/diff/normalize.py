"""Normalization of Kubernetes objects before comparison.

What goes: ``status`` and metadata the API server maintains on every write, plus the
annotations kubectl and the DaemonSet controller write for their own bookkeeping. What stays:
labels and annotations (a label added by hand is drift), everything in ``spec``/``data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..jsonpointer import escape

VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink",
                     "deletionTimestamp", "deletionGracePeriodSeconds")
VOLATILE_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "deprecated.daemonset.template.generation",
)

# Pointers that never count as drift, in the same order as above (used to filter additions).
VOLATILE_POINTERS = ("/status", *(f"/metadata/{k}" for k in VOLATILE_METADATA),
                     *("/metadata/annotations/" + escape(a) for a in VOLATILE_ANNOTATIONS))


def normalize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow-copied view of ``obj`` without volatile fields. Nested values are shared, not copied."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        m = {k: v for k, v in meta.items() if k not in VOLATILE_METADATA}
        ann = m.get("annotations")
        if isinstance(ann, Mapping):
            a = {k: v for k, v in ann.items() if k not in VOLATILE_ANNOTATIONS}
            if a:
                m["annotations"] = a
            else:
                del m["annotations"]
        if not m.get("labels"):
            m.pop("labels", None)
        out["metadata"] = m
    return out


def is_volatile(pointer: str) -> bool:
    return any(pointer == p or pointer.startswith(p + "/") for p in VOLATILE_POINTERS)
