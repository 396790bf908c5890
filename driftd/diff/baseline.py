"""Baselines for what templates leave out (pure: no client library, no I/O).

CloudFormation-style comparison checks declared properties only, so attaching an administrator policy to a
declared role, or adding egress to a declared group, is invisible when the template never mentioned it. For
each declared resource the target reads a per-type list of security-relevant properties the template leaves
out; the first time a resource is seen by a pass that records (the daemon, ``driftd sync``) those values become
its baseline, and a later difference is a change of drift kind ``undeclared`` (baseline as ``expected``, live
as ``actual``). ``driftd baseline`` re-takes it after an intended change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..model import Change, ChangeOp, Drift, DriftKind, ResourceKey


def canonical(v: Any) -> str:
    """A value's identity for comparison: key order and list order never count (adapters sort sets)."""
    return json.dumps(v, sort_keys=True, default=str)


def key_id(key: ResourceKey) -> str:
    """The state store's key for one resource's baseline."""
    return f"{key.kind}|{key.namespace}|{key.name}"


def diff(baseline: Mapping[str, Any], live: Mapping[str, Any]) -> list[Change]:
    """Changes from the baseline, for the properties both know (a property new to the list has no baseline)."""
    out = []
    for prop in sorted(baseline.keys() & live.keys()):
        if canonical(baseline[prop]) != canonical(live[prop]):
            out.append(Change(path=f"/{prop}", expected=baseline[prop], actual=live[prop], op=ChangeOp.NOT_EQUAL))
    return out


def extend(baseline: Mapping[str, Any] | None, live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The baseline with properties it lacks taken from ``live`` (first sight); None when nothing is new."""
    base = dict(baseline or {})
    new = {k: v for k, v in live.items() if k not in base}
    if not new and baseline is not None:
        return None
    base.update(new)
    return base


def merge(drifts: Sequence[Drift], undeclared: Mapping[ResourceKey, Sequence[Change]]) -> list[Drift]:
    """Add undeclared changes: to the resource's ``modified`` drift when it has one (a key is one drift in a
    report), else as a drift of kind ``undeclared``. A missing resource has no undeclared properties."""
    out = list(drifts)
    index = {d.key: i for i, d in enumerate(out)}
    for key in sorted(undeclared):
        changes = tuple(undeclared[key])
        if not changes:
            continue
        i = index.get(key)
        if i is None:
            out.append(Drift(key=key, drift=DriftKind.UNDECLARED, changes=changes))
        elif out[i].drift is DriftKind.MODIFIED:
            out[i] = replace(out[i], changes=out[i].changes + changes)
    out.sort(key=lambda x: (x.key, str(x.drift)))
    return out
