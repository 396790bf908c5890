"""Compare a declared CloudFormation property tree with the live one, CloudFormation's way.

Only declared properties are checked: a key the template leaves out is never
drift, whatever AWS filled in. Lists named in ``CompareSpec.sets`` are sets of
elements with a stable identity (a security-group rule, a policy statement, a
tag key): an element only live is ``ADD``, one only declared is ``REMOVE``,
and the path names the element (``/SecurityGroupIngress/tcp:22:0.0.0.0~10``).
Maps named in ``closed`` (tags, environment variables) report live-only keys
too. Scalars compare the way templates write them: ``"300"`` equals ``300``
and ``"true"`` equals ``true``. Pure: no client library, no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..jsonpointer import escape as escape  # named here too: the AWS tests build expected paths with it
from ..jsonpointer import join, unescape
from ..model import REDACTED, Change, ChangeOp

Identity = Callable[[Any], str]


@dataclass(frozen=True)
class CompareSpec:
    """Per resource type. Patterns are JSON pointers whose segments may be ``*`` (any one segment)."""

    sets: Mapping[str, Identity] = field(default_factory=dict)
    closed: tuple[str, ...] = ()
    secret: tuple[str, ...] = ()


def split_pointer(ptr: str) -> tuple[str, ...]:
    """Lenient: ``""`` and ``"/"`` are the root, a missing leading ``/`` is tolerated (spec tables' keys)."""
    if not ptr or ptr == "/":
        return ()
    return tuple(unescape(s) for s in ptr.lstrip("/").split("/"))


def _matches(pattern: tuple[str, ...], segs: Sequence[str]) -> bool:
    return len(pattern) == len(segs) and all(p in ("*", s) for p, s in zip(pattern, segs, strict=True))


def canonical_scalar(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(int(v)) if float(v).is_integer() else str(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower()
    return v


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {} or v == ""


class _Comparer:
    def __init__(self, spec: CompareSpec, skip: set[tuple[str, ...]]) -> None:
        self.sets = [(split_pointer(p), f) for p, f in spec.sets.items()]
        self.closed = [split_pointer(p) for p in spec.closed]
        self.skip = skip
        self.out: list[Change] = []

    def identity(self, segs: tuple[str, ...]) -> Identity | None:
        for pat, f in self.sets:
            if _matches(pat, segs):
                return f
        return None

    def change(self, segs: tuple[str, ...], expected: Any, actual: Any, op: ChangeOp) -> None:
        self.out.append(Change(path=join(segs), expected=expected, actual=actual, op=op))

    def walk(self, d: Any, live: Any, segs: tuple[str, ...]) -> None:
        if segs in self.skip or d is None:
            return
        if isinstance(d, Mapping):
            self.walk_map(d, live, segs)
        elif isinstance(d, list):
            self.walk_list(d, live, segs)
        elif live is None:
            self.change(segs, d, None, ChangeOp.REMOVE)
        elif canonical_scalar(d) != canonical_scalar(live):
            self.change(segs, d, live, ChangeOp.NOT_EQUAL)

    def walk_map(self, d: Mapping[str, Any], live: Any, segs: tuple[str, ...]) -> None:
        if live is None:
            live = {}
        if not isinstance(live, Mapping):
            self.change(segs, d, live, ChangeOp.NOT_EQUAL)
            return
        for k, dv in d.items():
            sub = (*segs, str(k))
            if sub in self.skip:
                continue
            lv = live.get(k)
            if lv is None:
                if not _empty(dv):
                    self.change(sub, dv, None, ChangeOp.REMOVE)
            else:
                self.walk(dv, lv, sub)
        if any(_matches(p, segs) for p in self.closed):
            for k, lv in live.items():
                if k not in d and not _empty(lv):
                    self.change((*segs, str(k)), None, lv, ChangeOp.ADD)

    def walk_list(self, d: list[Any], live: Any, segs: tuple[str, ...]) -> None:
        if live is None:
            live = []
        if not isinstance(live, list):
            self.change(segs, d, live, ChangeOp.NOT_EQUAL)
            return
        ident = self.identity(segs)
        if ident is not None:
            dm = {ident(x): x for x in d}
            lm = {ident(x): x for x in live}
            for k, dv in dm.items():
                if k not in lm:
                    self.change((*segs, k), dv, None, ChangeOp.REMOVE)
                else:
                    self.walk(dv, lm[k], (*segs, k))
            for k, lv in lm.items():
                if k not in dm:
                    self.change((*segs, k), None, lv, ChangeOp.ADD)
            return
        if len(d) != len(live):
            self.change(segs, d, live, ChangeOp.NOT_EQUAL)
            return
        for i, (dv, lv) in enumerate(zip(d, live, strict=True)):
            self.walk(dv, lv, (*segs, str(i)))


def prune_not_checked(props: Mapping[str, Any], not_checked: Sequence[str]) -> tuple[dict[str, Any],
                                                                                     set[tuple[str, ...]]]:
    """Drop unresolved values from the declared tree.

    A pointer inside a list element cannot be matched to a live element (which live rule is the
    unresolved one?), so the whole list is left unchecked rather than risk a false ``ADD``.
    Returns the pruned tree and the set of paths (segments) to skip.
    """
    tree: dict[str, Any] = copy.deepcopy(dict(props))
    skip: set[tuple[str, ...]] = set()
    for ptr in not_checked:
        segs = split_pointer(ptr)
        node: Any = tree
        for i, s in enumerate(segs):
            if isinstance(node, list):
                skip.add(segs[:i])
                break
            if not isinstance(node, dict) or s not in node:
                skip.add(segs[: i + 1])
                break
            if i == len(segs) - 1:
                del node[s]
                skip.add(segs)
                break
            node = node[s]
    return tree, skip


def compare(desired: Mapping[str, Any], live: Mapping[str, Any], spec: CompareSpec,
            not_checked: Sequence[str] = ()) -> list[Change]:
    """Changes between normalized declared and live property trees, declared keys only."""
    tree, skip = prune_not_checked(desired, not_checked)
    c = _Comparer(spec, skip)
    c.walk_map(tree, live, ())
    if not spec.secret:
        return c.out
    secrets = [split_pointer(p) for p in spec.secret]
    return [redact(ch) if _under_any(split_pointer(ch.path), secrets) else ch for ch in c.out]


def _under_any(segs: tuple[str, ...], patterns: list[tuple[str, ...]]) -> bool:
    return any(_matches(p, segs[: len(p)]) for p in patterns if len(segs) >= len(p))


def redact(ch: Change) -> Change:
    return Change(path=ch.path, expected=None if ch.expected is None else REDACTED,
                  actual=None if ch.actual is None else REDACTED, op=ch.op)


def tags_to_map(tags: Any) -> dict[str, str]:
    """CloudFormation ``[{Key, Value}]`` (any key case) or a map -> a map. ``aws:`` tags are AWS's own."""
    out: dict[str, str] = {}
    if isinstance(tags, Mapping):
        items = [(k, v) for k, v in tags.items()]
    elif isinstance(tags, list):
        items = [((t.get("Key") or t.get("key")), (t.get("Value", t.get("value")))) for t in tags
                 if isinstance(t, Mapping)]
    else:
        return out
    for k, v in items:
        if isinstance(k, str) and not k.startswith("aws:"):
            out[k] = "" if v is None else str(canonical_scalar(v))
    return out
