"""Kubernetes object names from Git, checked before they become API paths.

A name, namespace or kind read from a manifest ends up in a URL (``/api/v1/namespaces/{ns}/
configmaps/{name}``). A name holding ``/``, ``..``, ``?`` or ``#`` would address another object or
drop the query (``dryRun=All``) from the request. Two defences, both here:

- :func:`name_problem` / :func:`namespace_problem` / :func:`kind_problem`: what Kubernetes itself
  would refuse (DNS-1123 rules where they apply) is a per-object error naming the file;
- :func:`segment`: every segment is percent-escaped when the path is built, whatever passed.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")

# Kinds whose names Kubernetes validates as DNS-1123 labels (Service: DNS-1035, stricter still).
_LABEL_NAMED = frozenset({"Namespace", "Service"})
# Kinds whose names are DNS-1123 subdomains. Others (RBAC roles allow ':', CRDs' kinds are free)
# get the path-segment rule that every name must meet.
_SUBDOMAIN_NAMED = frozenset({
    "ConfigMap", "Secret", "ServiceAccount", "Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
    "Job", "CronJob", "Ingress", "IngressClass", "PersistentVolumeClaim", "PersistentVolume", "StorageClass",
    "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "LimitRange", "ResourceQuota",
    "PriorityClass", "Endpoints", "EndpointSlice", "CustomResourceDefinition", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "Lease",
})


def segment(value: str) -> str:
    """One URL path segment: nothing of ``value`` can end the segment, the path or start a query."""
    return quote(value, safe="")


def _path_segment_problem(what: str, value: str) -> str | None:
    if value in (".", ".."):
        return f"{what} {value!r} is not a valid name"
    bad = sorted({c for c in value if c in "/%?#\\" or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return f"{what} {value!r} may not contain {shown}"
    if len(value) > 253:
        return f"{what} is longer than 253 characters"
    return None


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` is not a valid name for ``kind``, or None."""
    p = _path_segment_problem("metadata.name", name)
    if p:
        return p
    if kind in _LABEL_NAMED and (len(name) > 63 or not _DNS1123_LABEL.match(name)):
        return (f"metadata.name {name!r} is not a valid {kind} name: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters (RFC 1123 label)")
    if kind in _SUBDOMAIN_NAMED and not _DNS1123_SUBDOMAIN.match(name):
        return (f"metadata.name {name!r} is not a valid {kind} name: lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit (RFC 1123 subdomain)")
    return None


def namespace_problem(namespace: str) -> str | None:
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        return (f"namespace {namespace!r} is not valid: lowercase letters, digits and '-', starting and ending "
                "with a letter or digit, at most 63 characters (RFC 1123 label)")
    return None


def kind_problem(kind: str) -> str | None:
    if not _KIND.match(kind):
        return f"kind {kind!r} is not valid: letters and digits, starting with a letter"
    return None
