"""``metadata.managedFields``: who owns which field, and what that says about drift.

fieldsV1 is a trie whose keys are ``f:<field>``, ``k:<json of the item's key fields>``,
``v:<json value>`` (set-like lists) and ``i:<index>``; ``.`` marks the node itself as owned and
``{}`` is an owned leaf. Paths are kept as tuples of these keys (``Path``) so two managers'
sets compare exactly as the API server wrote them, and are resolved to RFC 6901 pointers (list
items by their index in the live object) only to report them.

Used for:
- additions (flux2 issue 2099): fields a *human* manager owns that driftd's own apply would not
  declare. A forced apply would leave them in place, so the plain SSA diff cannot see them;
- attribution: the newest entry owning a changed field names who changed it, and when;
- revert: merging human entries into driftd's, so the next apply removes what Git lacks.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .normalize import is_volatile
from .pointer import child, split

Path = tuple[str, ...]
DRIFTD_MANAGER = "driftd"


@dataclass(frozen=True)
class Entry:
    manager: str
    operation: str
    time: datetime | None
    subresource: str
    fields: frozenset[Path]  # every owned node
    leaves: frozenset[Path]  # owned nodes that are atomic ({}), as opposed to owned containers (".")


def parse_fields(fields_v1: Mapping[str, Any]) -> tuple[frozenset[Path], frozenset[Path]]:
    """fieldsV1 -> (owned paths, owned atomic leaves)."""
    owned: set[Path] = set()
    leaves: set[Path] = set()

    def walk(node: Mapping[str, Any], at: Path) -> None:
        for k, v in node.items():
            if k == ".":
                owned.add(at)
                continue
            p = (*at, k)
            if not isinstance(v, Mapping) or not v:
                owned.add(p)
                leaves.add(p)
            else:
                walk(v, p)

    walk(fields_v1, ())
    return frozenset(owned), frozenset(leaves)


def parse_time(s: Any) -> datetime | None:
    if not isinstance(s, str) or not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def entries(obj: Mapping[str, Any]) -> list[Entry]:
    out = []
    for e in (obj.get("metadata") or {}).get("managedFields") or ():
        if not isinstance(e, Mapping):
            continue
        owned, leaves = parse_fields(e.get("fieldsV1") or {})
        out.append(Entry(manager=str(e.get("manager", "")), operation=str(e.get("operation", "")),
                         time=parse_time(e.get("time")), subresource=str(e.get("subresource") or ""),
                         fields=owned, leaves=leaves))
    return out


def is_human(manager: str, patterns: Iterable[str]) -> bool:
    return manager != DRIFTD_MANAGER and any(fnmatch.fnmatchcase(manager, p) for p in patterns)


# --- resolving paths against an object ---------------------------------------------------------


def match_item(items: Sequence[Any], key: str) -> int | None:
    kind, _, raw = key.partition(":")
    if kind == "i":
        i = int(raw) if raw.isdigit() else -1
        return i if 0 <= i < len(items) else None
    try:
        want = json.loads(raw)
    except ValueError:
        return None
    for i, it in enumerate(items):
        if kind == "v" and it == want:
            return i
        if kind == "k" and isinstance(it, Mapping) and isinstance(want, Mapping) and all(
            it.get(f) == v for f, v in want.items()
        ):
            return i
    return None


def resolve(obj: Any, path: Path) -> str | None:
    """The RFC 6901 pointer of ``path`` in ``obj``, or None when ``obj`` lacks it."""
    node, at = obj, ""
    for seg in path:
        if seg.startswith("f:"):
            name = seg[2:]
            if not isinstance(node, Mapping) or name not in node:
                return None
            node, at = node[name], child(at, name)
        elif isinstance(node, list):
            i = match_item(node, seg)
            if i is None:
                return None
            node, at = node[i], child(at, i)
        else:
            return None
    return at


def value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    ptr = resolve(obj, path)
    if ptr is None:
        return False, None
    node = obj
    for tok in split(ptr):
        node = node[int(tok)] if isinstance(node, list) else node[tok]
    return True, node


# --- additions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Addition:
    path: Path
    pointer: str
    value: Any
    manager: str
    time: datetime | None


def declared_by(p: Path, owned: frozenset[Path], leaves: frozenset[Path]) -> bool:
    if p in owned:
        return True
    return any(p[:i] in leaves for i in range(1, len(p)))


def additions(live: Mapping[str, Any], declared: Mapping[str, Any] | None, human_managers: Iterable[str]
              ) -> list[Addition]:
    """Fields human managers own in ``live`` that driftd's apply does not declare.

    ``declared`` is the object the SSA dry run returned: its ``driftd`` Apply entry is exactly the
    set of fields Git declares, in the server's own key format. Only the shallowest undeclared
    node is reported (an added env var is one addition, not three).
    """
    patterns = tuple(human_managers)
    d_owned: frozenset[Path] = frozenset()
    d_leaves: frozenset[Path] = frozenset()
    for e in entries(declared or {}):
        if e.manager == DRIFTD_MANAGER and e.operation == "Apply" and not e.subresource:
            d_owned |= e.fields
            d_leaves |= e.leaves
    found: dict[Path, Addition] = {}
    for e in entries(live):
        if not is_human(e.manager, patterns) or e.subresource == "status":
            continue
        for p in e.fields:
            if not p or declared_by(p, d_owned, d_leaves):
                continue
            ok, value = value_at(live, p)
            ptr = resolve(live, p)
            if not ok or ptr is None or is_volatile(ptr):
                continue
            prev = found.get(p)
            if prev is None or (e.time and (prev.time is None or e.time > prev.time)):
                found[p] = Addition(p, ptr, value, e.manager, e.time)
    # One addition per unit: a list, or a list item, is reported whole (an added env var is one
    # addition, not three); a map is reported key by key (each added annotation on its own).
    def is_map(a: Addition) -> bool:
        return a.path[-1].startswith("f:") and isinstance(a.value, Mapping)

    units = {p for p, a in found.items() if not is_map(a)}
    out = [a for a in found.values()
           if not any(a.path[:i] in units for i in range(1, len(a.path)))
           and not (is_map(a) and any(len(q) > len(a.path) and q[:len(a.path)] == a.path for q in found))]
    return sorted(out, key=lambda a: a.pointer)


def differs_from_defaults(add: Addition, defaults: Mapping[str, Any]) -> bool:
    """False when a server-defaulted object carries the same value: an Update manager owning a
    defaulted field (``kubectl create`` does) is not an out-of-band addition."""
    ok, value = value_at(defaults, add.path)
    return not ok or value != add.value


# --- attribution -------------------------------------------------------------------------------


def _pointers(live: Any, e: Entry) -> Iterator[str]:
    for p in e.fields:
        ptr = resolve(live, p)
        if ptr is not None:
            yield ptr


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


class Attributor:
    """Answers "who changed this pointer, and when" from one live object's managedFields."""

    def __init__(self, live: Mapping[str, Any], human_managers: Iterable[str]) -> None:
        self._entries = [(e, tuple(_pointers(live, e))) for e in entries(live)
                         if e.manager != DRIFTD_MANAGER and e.subresource != "status"]
        self._human = tuple(human_managers)
        times = [e.time for e in entries(live) if e.manager == DRIFTD_MANAGER and e.time]
        self._driftd_time = max(times) if times else None

    def who(self, ptr: str) -> tuple[str | None, datetime | None]:
        best: Entry | None = None
        for e, ptrs in self._entries:
            if any(_related(ptr, q) for q in ptrs) and _newer(e, best):
                best = e
        if best is None:
            # Nobody owns a removed field. Witnesses, best first: the newest human write after
            # driftd's own that touched the same parent (kubectl label owning another label), else
            # the only human who wrote after driftd. Ambiguity stays unattributed.
            parent = ptr.rpartition("/")[0]
            recent = [(e, ptrs) for e, ptrs in self._entries if is_human(e.manager, self._human)
                      and (self._driftd_time is None or (e.time is not None and e.time >= self._driftd_time))]
            for e, ptrs in recent:
                if any(q.startswith(parent + "/") for q in ptrs) and _newer(e, best):
                    best = e
            if best is None and len({e.manager for e, _ in recent}) == 1:
                best = recent[0][0]
        return (best.manager, best.time) if best else (None, None)


def _newer(e: Entry, than: Entry | None) -> bool:
    if than is None:
        return True
    if e.time is None:
        return False
    return than.time is None or e.time > than.time


# --- revert: take over human entries -----------------------------------------------------------


def merge_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in a.items()}
    for k, v in b.items():
        if k in out and isinstance(out[k], Mapping) and isinstance(v, Mapping):
            out[k] = merge_fields(out[k], v)
        else:
            out[k] = v
    return out


def _split(fields: Mapping[str, Any], at: Path, keep: Callable[[Path], bool]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """fieldsV1 -> (part to take over, part whose ownership stays where it is)."""
    take: dict[str, Any] = {}
    stay: dict[str, Any] = {}
    for k, v in fields.items():
        p = at if k == "." else (*at, k)
        if k != "." and isinstance(v, Mapping) and v:
            t, s = _split(v, p, keep)
            if t:
                take[k] = t
            if s:
                stay[k] = s
        elif keep(p):
            stay[k] = v
        else:
            take[k] = v
    return take, stay


def take_over(managed_fields: Sequence[Mapping[str, Any]], human_managers: Iterable[str], api_version: str,
              keep: Callable[[Path], bool] = lambda p: False) -> list[dict[str, Any]] | None:
    """managedFields with every human entry merged into driftd's Apply entry (Flux's approach), or
    None when there is nothing to take over. Applying afterwards removes the fields Git lacks.
    Fields for which ``keep`` is true (ignored ones) stay with their human owner, untouched."""
    patterns = tuple(human_managers)
    keep_entries: list[dict[str, Any]] = []
    taken: list[Mapping[str, Any]] = []
    mine: dict[str, Any] | None = None
    for e in managed_fields:
        if is_human(str(e.get("manager", "")), patterns) and e.get("subresource") != "status":
            take, stay = _split(e.get("fieldsV1") or {}, (), keep)
            if take:
                taken.append(take)
            if stay:
                keep_entries.append({**e, "fieldsV1": stay})
        elif e.get("manager") == DRIFTD_MANAGER and e.get("operation") == "Apply" and not e.get("subresource"):
            mine = dict(e)
        else:
            keep_entries.append(dict(e))
    if not taken:
        return None
    if mine is None:
        mine = {"manager": DRIFTD_MANAGER, "operation": "Apply", "apiVersion": api_version,
                "fieldsType": "FieldsV1", "fieldsV1": {}}
    fields: dict[str, Any] = dict(mine.get("fieldsV1") or {})
    for t in taken:
        fields = merge_fields(fields, t)
    mine["fieldsV1"] = fields
    return [*keep_entries, mine]
