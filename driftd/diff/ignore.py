"""Ignore rules: which pointers of an object driftd neither compares nor applies.

Sources: ``[[environments.ignore]]`` rules (kind, name glob, namespace glob, pointers) and the
object's own ``driftd.io/ignore`` annotation (comma-separated pointers) in Git. The same set is
removed from both sides before comparing AND from the object driftd applies, so a field that is
ignored is never taken over by a revert (Argo CD's RespectIgnoreDifferences lesson).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..config import IgnoreRule
from . import pointer

IGNORE_ANNOTATION = "driftd.io/ignore"
MODE_ANNOTATION = "driftd.io/mode"
REPLICAS = "/spec/replicas"


def annotation_paths(body: Mapping[str, Any]) -> tuple[str, ...]:
    ann = (body.get("metadata") or {}).get("annotations") or {}
    raw = ann.get(IGNORE_ANNOTATION)
    if not isinstance(raw, str):
        return ()
    return tuple(p.strip() for p in raw.split(",") if p.strip().startswith("/"))


def invalid_annotation_paths(body: Mapping[str, Any]) -> tuple[str, ...]:
    """Entries of ``driftd.io/ignore`` that are not pointers, for a clear error message."""
    ann = (body.get("metadata") or {}).get("annotations") or {}
    raw = ann.get(IGNORE_ANNOTATION)
    if not isinstance(raw, str):
        return ()
    return tuple(p.strip() for p in raw.split(",") if p.strip() and not p.strip().startswith("/"))


def ignored_paths(rules: Iterable[IgnoreRule], *, kind: str, name: str, namespace: str,
                  body: Mapping[str, Any], hpa_target: bool = False) -> tuple[str, ...]:
    """Every pattern ignored for one object, in a stable order without duplicates."""
    out: list[str] = []
    for r in rules:
        if r.target in ("*", "kubernetes") and r.matches(kind, name, namespace):
            out.extend(r.paths)
    out.extend(annotation_paths(body))
    if hpa_target:
        out.append(REPLICAS)
    return tuple(dict.fromkeys(out))


def strip(obj: Mapping[str, Any], patterns: Iterable[str]) -> dict[str, Any]:
    """A copy of ``obj`` without the ignored fields (no copy when nothing is ignored)."""
    pats = tuple(patterns)
    if not pats:
        return dict(obj)
    return pointer.remove_matching(dict(obj), pats)  # type: ignore[no-any-return]


def is_ignored(path: str, patterns: Iterable[str], obj: Any) -> bool:
    """Whether a concrete pointer of ``obj`` lies at or below a field some pattern selects."""
    for pat in patterns:
        for concrete in pointer.expand(obj, pat):
            if pointer.is_prefix(concrete, path):
                return True
    return False
