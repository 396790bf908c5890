"""One Kubernetes object's verdict: the predicted object (SSA dry run of Git) against the live one.

Pure: the target fetches both objects; this module says what differs, who did it, and hides
Secret values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..model import Change, ChangeOp
from . import ignore, managed_fields, secrets
from .compare import compare
from .normalize import normalize


@dataclass(frozen=True)
class Verdict:
    changes: tuple[Change, ...]
    changed_by: str | None = None
    changed_at: datetime | None = None
    # Additions that a server-defaulted copy of the object would need to confirm (see
    # managed_fields.differs_from_defaults); empty when nothing is in doubt.
    unconfirmed: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not self.changes


def explain(*, kind: str, predicted: Mapping[str, Any], live: Mapping[str, Any], ignored: Iterable[str] = (),
            human_managers: Iterable[str] = (), defaults: Mapping[str, Any] | None = None,
            sensitive: bool = False) -> Verdict:
    """Compare ``predicted`` (what live becomes when Git is applied) with ``live``.

    ``defaults`` is the object as the server would create it from Git alone; when given, a
    human-owned field holding exactly its server default is not reported as an addition.
    """
    pats = tuple(ignored)
    humans = tuple(human_managers)
    exp = normalize(ignore.strip(predicted, pats) if pats else predicted)
    act = normalize(ignore.strip(live, pats) if pats else live)
    changes = compare(exp, act)
    seen = {c.path for c in changes}
    adds = []
    unconfirmed = []
    for a in managed_fields.additions(live, predicted, humans):
        if any(managed_fields_related(a.pointer, p) for p in seen) or ignore.is_ignored(a.pointer, pats, live):
            continue
        if defaults is not None and not managed_fields.differs_from_defaults(a, defaults):
            continue
        if defaults is None:
            unconfirmed.append(a.pointer)
        adds.append(Change(a.pointer, expected=None, actual=a.value, op=ChangeOp.ADD,
                           changed_by=a.manager, changed_at=a.time))
    attr = managed_fields.Attributor(live, humans)
    out: list[Change] = []
    for c in changes:
        who, when = attr.who(c.path)
        out.append(replace(c, changed_by=who, changed_at=when))
    out.extend(adds)
    out.sort(key=lambda c: c.path)
    out = secrets.redact_changes(kind, out, sensitive=sensitive, objects=(predicted, live))
    by, at = _newest(out)
    return Verdict(tuple(out), by, at, tuple(unconfirmed))


def managed_fields_related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _newest(changes: Iterable[Change]) -> tuple[str | None, datetime | None]:
    best: Change | None = None
    for c in changes:
        if c.changed_by and (best is None or (c.changed_at and (best.changed_at is None
                                                                  or c.changed_at > best.changed_at))):
            best = c
    return (best.changed_by, best.changed_at) if best else (None, None)


def hpa_targets(objects: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every workload a HorizontalPodAutoscaler scales."""
    out = set()
    for o in objects:
        if o.get("kind") != "HorizontalPodAutoscaler":
            continue
        ref = (o.get("spec") or {}).get("scaleTargetRef") or {}
        ns = (o.get("metadata") or {}).get("namespace") or ""
        if ref.get("kind") and ref.get("name"):
            out.add((str(ref["kind"]), str(ns), str(ref["name"])))
    return out
