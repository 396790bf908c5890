"""Which environment an object belongs to, before anything is pruned.

Every object driftd applies carries the annotation ``driftd.io/environment: <env>`` (the
ownership mark, added to the planned body, so dry runs predict it and the apply sets it). An
inventoried object that Git no longer declares is ``orphaned`` (reported, and pruned where
allowed) only when:

- no other configured environment on the same cluster declares it (then it moved there: that
  environment adopts it, nothing is deleted), and every one of them has been checked since this
  process started (until then nobody can tell: the object stays inventoried, undecided);
- its mark names this environment, or it has no mark at all (applied before marks existed, or
  adopted while in sync and so never applied): then the inventory, which says this environment
  declared it, is the proof, as before marks.

An object whose mark names another environment (one this process does not run, a second driftd
with another config) is not this environment's to report or delete.

Why an annotation rather than a per-environment field manager: the mark must be readable from the
live object alone by every environment (a field manager is too, but renaming driftd's manager would
turn every object applied as ``driftd`` into one co-owned by two managers, so fields dropped from Git
would no longer be removed, and the no-op proof in diff/noop.py, which keys on the manager name,
would fail for every object until it is re-applied). The annotation leaves field ownership as it
is; an object applied before it existed is not drift (without_mark) and gets it at its next apply.
An annotation, not a label (Flux's choice): environment names need not be valid label values, and
nothing selects on it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from ...diff import pointer
from ...model import Change

OWNER_ANNOTATION = "driftd.io/environment"
OWNER_POINTER = pointer.join(("metadata", "annotations", OWNER_ANNOTATION))
_ANNOTATIONS = pointer.join(("metadata", "annotations"))

Ident = tuple[str, str, str, str]  # group, kind, namespace, name


class Orphan(StrEnum):
    MINE = "mine"
    DECLARED_ELSEWHERE = "declared by another environment"
    OTHER_OWNER = "marked as another environment's"
    UNKNOWN = "unknown: not every environment on the cluster has been checked"


def mark(body: Mapping[str, Any], env: str) -> dict[str, Any]:
    """``body`` with the ownership annotation of ``env`` (a copy)."""
    out = copy.copy(dict(body))
    meta = dict(out.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), OWNER_ANNOTATION: env}
    out["metadata"] = meta
    return out


def unmark(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` without the ownership annotation (and without ``annotations`` if that was all)."""
    meta = dict(body.get("metadata") or {})
    ann = dict(meta.get("annotations") or {})
    if OWNER_ANNOTATION not in ann:
        return dict(body)
    del ann[OWNER_ANNOTATION]
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    return {**body, "metadata": meta}


def owner(live: Mapping[str, Any]) -> str | None:
    ann = (live.get("metadata") or {}).get("annotations") or {}
    v = ann.get(OWNER_ANNOTATION)
    return str(v) if v is not None else None


def without_mark(changes: tuple[Change, ...]) -> tuple[Change, ...]:
    """The ownership mark is bookkeeping, not drift: an object applied before marks existed (or by
    another environment, a conflict reported elsewhere) is in sync if nothing else differs."""
    return tuple(c for c in changes if not _is_mark(c))


def _is_mark(c: Change) -> bool:
    if c.path == OWNER_POINTER:
        return True
    # An object without any annotation: the difference is the whole map, holding only the mark.
    return (c.path == _ANNOTATIONS and isinstance(c.expected, Mapping) and set(c.expected) == {OWNER_ANNOTATION}
            and not c.actual)


def orphan_verdict(env: str, ident: Ident, live: Mapping[str, Any],
                   others: Mapping[str, frozenset[Ident]] | None) -> Orphan:
    if others is None:
        return Orphan.UNKNOWN
    if any(ident in claims for claims in others.values()):
        return Orphan.DECLARED_ELSEWHERE
    who = owner(live)
    if who is not None:
        return Orphan.MINE if who == env else Orphan.OTHER_OWNER
    # No mark: applied before marks existed, or adopted in sync (never applied). The inventory says
    # this environment declared it, and no configured environment declares it now.
    return Orphan.MINE
