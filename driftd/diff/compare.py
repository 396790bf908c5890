"""Field-level comparison of two JSON-like documents.

``==`` first (microseconds); only a pair that differs is walked to explain it. Maps are
compared key by key; lists of maps that carry a merge key (``name``, ``containerPort``,
``port``, ``mountPath`` ...) are aligned by that key so one inserted env var is one change,
not a cascade of index shifts. Other lists that differ are reported whole, which reads better
than index noise for ``args`` or ``command``.
"""

from __future__ import annotations

from typing import Any

from ..model import Change, ChangeOp
from .pointer import child

# Merge keys Kubernetes uses for its lists of maps, most specific first.
_MERGE_KEYS = ("name", "mountPath", "devicePath", "containerPort", "port", "ip", "type", "key", "topologyKey")


def compare(expected: Any, actual: Any, path: str = "") -> list[Change]:
    """Differences from ``expected`` to ``actual``: ADD (only actual), REMOVE (only expected), NOT_EQUAL."""
    if expected == actual:
        return []
    out: list[Change] = []
    _walk(expected, actual, path, out)
    return out


def _walk(exp: Any, act: Any, path: str, out: list[Change]) -> None:
    if exp == act:
        return
    if isinstance(exp, dict) and isinstance(act, dict):
        for k in exp:
            p = child(path, k)
            if k not in act:
                out.append(Change(p, expected=exp[k], actual=None, op=ChangeOp.REMOVE))
            else:
                _walk(exp[k], act[k], p, out)
        for k in act:
            if k not in exp:
                out.append(Change(child(path, k), expected=None, actual=act[k], op=ChangeOp.ADD))
        return
    if isinstance(exp, list) and isinstance(act, list):
        key = _merge_key(exp, act)
        if key is not None:
            _walk_keyed(exp, act, key, path, out)
            return
        if len(exp) == len(act) and all(isinstance(x, dict) for x in exp + act):
            for i, (e, a) in enumerate(zip(exp, act, strict=True)):
                _walk(e, a, child(path, i), out)
            return
    out.append(Change(path, expected=exp, actual=act, op=ChangeOp.NOT_EQUAL))


def _merge_key(exp: list[Any], act: list[Any]) -> str | None:
    items = exp + act
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for key in _MERGE_KEYS:
        if all(key in x for x in items):
            ek = [_hashable(x[key]) for x in exp]
            ak = [_hashable(x[key]) for x in act]
            if len(set(ek)) == len(ek) and len(set(ak)) == len(ak):
                return key
    return None


def _hashable(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool)) or v is None else repr(v)


def _walk_keyed(exp: list[dict[str, Any]], act: list[dict[str, Any]], key: str, path: str,
                out: list[Change]) -> None:
    before = len(out)
    act_index = {_hashable(a[key]): i for i, a in enumerate(act)}
    seen: set[Any] = set()
    for ei, e in enumerate(exp):
        k = _hashable(e[key])
        ai = act_index.get(k)
        if ai is None:
            out.append(Change(child(path, ei), expected=e, actual=None, op=ChangeOp.REMOVE))
            continue
        seen.add(k)
        _walk(e, act[ai], child(path, ai), out)
    for ai, a in enumerate(act):
        if _hashable(a[key]) not in seen:
            out.append(Change(child(path, ai), expected=None, actual=a, op=ChangeOp.ADD))
    if len(out) == before:
        # Same items in another order: each item compares equal on its own, the list does not.
        out.append(Change(path, expected=exp, actual=act, op=ChangeOp.NOT_EQUAL))
