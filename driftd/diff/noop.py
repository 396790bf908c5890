"""Proving, without asking the API server, that applying Git's object would change nothing.

A forced server-side apply of ``applied`` (manager ``driftd``) onto ``live`` returns ``live``
unchanged when:

1. driftd's own Apply entry in ``live`` owns exactly the fields ``applied`` declares: no more
   (an apply would remove the fields Git dropped), no fewer (a field driftd does not own yet
   comes with no schema knowledge: atomic or granular is unknown);
2. every declared value equals the live one exactly (types included: ``1`` is not ``"1"``,
   ``True`` is not ``1``). A value the server rewrites is unequal: a defaulted field inside an
   atomic struct, or a quantity (``2000m`` is stored as ``2``). For quantities only, the caller
   may pass what the server was seen to store for the same declared value at the same schema
   path (learned from an earlier dry run, see ``server_rewrites``); unknown ones are returned as
   ``pending``, so the caller can learn them from one dry run and prove the rest;
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

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .managed_fields import DRIFTD_MANAGER, declared_by, entries, is_human, match_item
from .pointer import child
from .quantity import same_amount

# Top-level and metadata fields that identify the object rather than belong to its content:
# managedFields never list them; they must simply be equal.
_IDENTITY = ("apiVersion", "kind")
_META_IDENTITY = ("name", "namespace")

# (pointer, declared value) -> what the server stores for it there, or None when not known.
Canonical = Callable[[str, Any], Any]


class NotNoop(Exception):
    """Why the apply cannot be proven to be a no-op (the caller then asks the server)."""


@dataclass(frozen=True)
class Proof:
    reason: str | None  # None: applying changes nothing
    # Declared quantities that differ from the live value and whose stored form is not known yet:
    # the only obstacle when ``reason`` starts with PENDING.
    pending: tuple[tuple[str, Any], ...] = ()

    @property
    def noop(self) -> bool:
        return self.reason is None


PENDING = "quantities the server may have rewritten"


def prove(applied: Mapping[str, Any], live: Mapping[str, Any], human_managers: Iterable[str], *,
          canonical: Canonical | None = None) -> Proof:
    """Whether applying ``applied`` as driftd onto ``live`` provably changes nothing."""
    w = _Walker(canonical)
    try:
        trie, body = _prepare(applied, live)
        w.walk(body, live, trie, "")
        _no_additions(live, tuple(human_managers))
    except NotNoop as e:
        return Proof(str(e))
    if w.pending:
        return Proof(f"{PENDING}: {', '.join(p for p, _ in w.pending)}", tuple(w.pending))
    return Proof(None)


def apply_is_noop(applied: Mapping[str, Any], live: Mapping[str, Any], human_managers: Iterable[str], *,
                  canonical: Canonical | None = None) -> str | None:
    """None when applying ``applied`` as driftd onto ``live`` provably changes nothing, else the
    reason it cannot be proven (for logs and tests)."""
    return prove(applied, live, human_managers, canonical=canonical).reason


def server_rewrites(applied: Mapping[str, Any], predicted: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(pointer, declared value, stored value) for every declared quantity the server rewrote, read
    from a dry run's result (whose driftd entry owns exactly what ``applied`` declares). Empty when
    the two do not line up item by item: nothing is learned from a pairing that is not certain."""
    w = _Walker(None, learn=True)
    try:
        trie, body = _prepare(applied, predicted)
        w.walk(body, predicted, trie, "")
    except NotNoop:
        return []
    return w.rewrites


def schema_pointer(ptr: str) -> str:
    """The pointer with list indices replaced by ``*``: the same field in every item."""
    return "/".join("*" if t.isdigit() else t for t in ptr.split("/"))


def _prepare(applied: Mapping[str, Any], live: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, Any]]:
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
    return trie, body


def _no_additions(live: Mapping[str, Any], humans: tuple[str, ...]) -> None:
    """4. additions: human-owned fields that driftd's entry does not declare."""
    parsed = entries(live)
    own = next(e for e in parsed if e.manager == DRIFTD_MANAGER and e.operation == "Apply" and not e.subresource)
    for e in parsed:
        if not is_human(e.manager, humans) or e.subresource == "status":
            continue
        for p in e.fields:
            if p and not declared_by(p, own.fields, own.leaves):
                raise NotNoop(f"{e.manager} owns a field driftd does not declare")


class _Walker:
    def __init__(self, canonical: Canonical | None, *, learn: bool = False) -> None:
        self.canonical = canonical
        self.learn = learn
        self.pending: list[tuple[str, Any]] = []
        self.rewrites: list[tuple[str, Any, Any]] = []

    def walk(self, want: Any, have: Any, trie: Mapping[str, Any], at: str) -> None:
        """``want`` (declared, granular at this node) against ``have`` (live) and driftd's trie node."""
        if isinstance(want, Mapping):
            if not isinstance(have, Mapping):
                raise NotNoop(f"{at or '/'}: not an object live")
            fields = {k for k in trie if k != "."}
            for k, v in want.items():
                sub = trie.get(f"f:{k}")
                here = child(at, k)
                if sub is None:
                    raise NotNoop(f"{here}: declared, not owned by driftd")
                fields.discard(f"f:{k}")
                if k not in have:
                    raise NotNoop(f"{here}: absent live")
                if isinstance(sub, Mapping) and sub:
                    self.walk(v, have[k], sub, here)
                else:
                    self.leaf(v, have[k], here)
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
                here = child(at, i)
                match = [k for k in items if k not in used
                         and (k == f"i:{i}" if k.startswith("i:") else match_item([h], k) == 0)]
                if len(match) != 1 or not _declared_key_agrees(w, match[0]):
                    raise NotNoop(f"{here}: item not matched to driftd's entry")
                used.add(match[0])
                sub = trie[match[0]]
                if isinstance(sub, Mapping) and any(k != "." for k in sub):
                    self.walk(w, h, sub, here)
                else:
                    self.leaf(w, h, here)
            return
        raise NotNoop(f"{at}: a value where driftd's entry has a struct")

    def leaf(self, want: Any, have: Any, at: str) -> None:
        if same(want, have):
            return
        if not same_amount(want, have):  # only a quantity's spelling may be the server's doing
            raise NotNoop(f"{at}: differs")
        if self.learn:
            self.rewrites.append((at, want, have))
            return
        stored = self.canonical(at, want) if self.canonical else None
        if stored is None:
            self.pending.append((at, want))
        elif not same(stored, have):
            raise NotNoop(f"{at}: differs")


def _declared_key_agrees(item: Any, key: str) -> bool:
    """A ``k:`` item key agrees with the declared item on every key field the item declares (the
    others, such as a defaulted ``protocol``, come from the server)."""
    if not key.startswith("k:"):
        return True
    try:
        fields = json.loads(key[2:])
    except ValueError:
        return False
    return isinstance(item, Mapping) and isinstance(fields, Mapping) and all(
        same(item[f], v) for f, v in fields.items() if f in item)


def same(a: Any, b: Any) -> bool:
    """Deep equality that also compares scalar types (``1 == 1.0 == True`` in Python, not in JSON)."""
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
