"""Proving, without asking the API server, that applying Git's object would change nothing.

A forced server-side apply of ``applied`` (manager ``driftd``) onto ``live`` returns ``live``
unchanged when:

1. driftd's own Apply entry in ``live`` owns exactly the fields ``applied`` declares: no more
   (an apply would remove the fields Git dropped), no fewer (a field driftd does not own yet
   comes with no schema knowledge: atomic or granular is unknown);
2. every declared value equals the live one exactly (types included: ``1`` is not ``"1"``,
   ``True`` is not ``1``). A value the server would normalize (a quantity such as ``2000m``, a
   defaulted field inside an atomic struct) is simply unequal: the caller falls back to the dry
   run, so the server stays the only judge of normalization;
3. lists line up item by item (same length, same order, each declared item matching the live
   item at the same index through the entry's own keys), so no merge or reordering happens;
4. no human manager owns a field outside what driftd declares (an out-of-band addition: that
   verdict is left to the dry run, which sees the same set and can be confirmed against defaults).

The entry's fieldsV1 is the schema: ``{}`` marks an atomic value (compared whole), a map of
``f:`` keys a granular struct or map, ``k:``/``v:``/``i:`` keys the items of a list. When all of
the above holds, the predicted object *is* the live object (mutating webhooks aside, which the
verdict cache already assumes to be deterministic), and the verdict is computed from ``live``
alone, with the same code as after a dry run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .managed_fields import DRIFTD_MANAGER, declared_by, entries, is_human, match_item

# Top-level and metadata fields that identify the object rather than belong to its content:
# managedFields never list them; they must simply be equal.
_IDENTITY = ("apiVersion", "kind")
_META_IDENTITY = ("name", "namespace")


class NotNoop(Exception):
    """Why the apply cannot be proven to be a no-op (the caller then asks the server)."""


def apply_is_noop(applied: Mapping[str, Any], live: Mapping[str, Any], human_managers: Iterable[str]
                  ) -> str | None:
    """None when applying ``applied`` as driftd onto ``live`` provably changes nothing, else the
    reason it cannot be proven (for logs and tests)."""
    try:
        _check(applied, live, tuple(human_managers))
    except NotNoop as e:
        return str(e)
    return None


def _check(applied: Mapping[str, Any], live: Mapping[str, Any], humans: tuple[str, ...]) -> None:
    raw = [e for e in (live.get("metadata") or {}).get("managedFields") or ()
           if isinstance(e, Mapping) and e.get("manager") == DRIFTD_MANAGER and e.get("operation") == "Apply"
           and not e.get("subresource")]
    if len(raw) != 1:
        raise NotNoop("driftd has not applied this object" if not raw else "several driftd Apply entries")
    mine = raw[0]
    for k in _IDENTITY:
        if applied.get(k) != live.get(k):
            raise NotNoop(f"{k} differs")
    if mine.get("apiVersion") != applied.get("apiVersion"):
        raise NotNoop("driftd's entry was written at another apiVersion")
    if mine.get("fieldsType", "FieldsV1") != "FieldsV1" or not isinstance(mine.get("fieldsV1"), Mapping):
        raise NotNoop("driftd's entry has no fieldsV1")
    trie: Mapping[str, Any] = mine["fieldsV1"]
    body = {k: v for k, v in applied.items() if k not in _IDENTITY}
    meta = body.get("metadata")
    if not isinstance(meta, Mapping):
        raise NotNoop("no metadata")
    lmeta = live.get("metadata") or {}
    for k in _META_IDENTITY:
        if meta.get(k) != lmeta.get(k):
            raise NotNoop(f"metadata.{k} differs")
    meta = {k: v for k, v in meta.items() if k not in _META_IDENTITY}
    if meta:
        body["metadata"] = meta
    else:
        body.pop("metadata")
    _walk(body, live, trie, "")
    # 4. additions: human-owned fields that driftd's entry does not declare.
    parsed = entries(live)
    own = next(e for e in parsed if e.manager == DRIFTD_MANAGER and e.operation == "Apply" and not e.subresource)
    for e in parsed:
        if not is_human(e.manager, humans) or e.subresource == "status":
            continue
        for p in e.fields:
            if p and not declared_by(p, own.fields, own.leaves):
                raise NotNoop(f"{e.manager} owns a field driftd does not declare")


def _walk(want: Any, have: Any, trie: Mapping[str, Any], at: str) -> None:
    """``want`` (declared, granular at this node) against ``have`` (live) and driftd's trie node."""
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            raise NotNoop(f"{at or '/'}: not an object live")
        fields = {k for k in trie if k != "."}
        for k, v in want.items():
            sub = trie.get(f"f:{k}")
            here = f"{at}/{k}"
            if sub is None:
                raise NotNoop(f"{here}: declared, not owned by driftd")
            fields.discard(f"f:{k}")
            if k not in have:
                raise NotNoop(f"{here}: absent live")
            if isinstance(sub, Mapping) and sub:
                _walk(v, have[k], sub, here)
            elif not same(v, have[k]):
                raise NotNoop(f"{here}: differs")
        if fields:
            raise NotNoop(f"{at or '/'}: driftd owns fields Git no longer declares")
        return
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            raise NotNoop(f"{at}: list length differs")
        items = [k for k in trie if k != "."]
        if any(k[:2] not in ("k:", "v:", "i:") for k in items) or len(items) != len(want):
            raise NotNoop(f"{at}: driftd owns other items")
        used: set[str] = set()
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            match = [k for k in items if k not in used
                     and (k == f"i:{i}" if k.startswith("i:") else match_item([h], k) == 0)]
            if len(match) != 1:
                raise NotNoop(f"{at}/{i}: item not matched to driftd's entry")
            used.add(match[0])
            sub = trie[match[0]]
            here = f"{at}/{i}"
            if isinstance(sub, Mapping) and any(k != "." for k in sub):
                _walk(w, h, sub, here)
            elif not same(w, h):
                raise NotNoop(f"{here}: differs")
        return
    raise NotNoop(f"{at}: a value where driftd's entry has a struct")


def same(a: Any, b: Any) -> bool:
    """Deep equality that also compares scalar types (``1 == 1.0 == True`` in Python, not in JSON)."""
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
