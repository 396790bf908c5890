"""JSON pointers (RFC 6901) over plain JSON-like data, plus the selector segments ignore rules use.

Reported paths are plain RFC 6901 pointers. A list item is addressed by its index *in the
live object* (``/spec/template/spec/containers/0/image``); for an item that only the expected
side has (op ``remove``) the index is the one in the expected list.

Patterns (ignore rules, ``driftd.io/ignore``) may also use, where the node is a list:

- ``*`` : every item (also every key of a map);
- ``name=app`` : the items whose field ``name`` equals ``app`` (any field, string comparison),

so ``/spec/template/spec/containers/name=app/image`` survives a reordering of the containers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

# The RFC 6901 primitives live one layer down (policy's YAML editor needs them too); named here as well.
from ..jsonpointer import escape as escape
from ..jsonpointer import get as get
from ..jsonpointer import join as join
from ..jsonpointer import split as split
from ..jsonpointer import unescape as unescape

_MISSING = object()


def child(pointer: str, token: str | int) -> str:
    return f"{pointer}/{escape(str(token))}"


def is_prefix(prefix: str, pointer: str) -> bool:
    """True when ``pointer`` equals ``prefix`` or lies below it."""
    return pointer == prefix or pointer.startswith(prefix + "/") or prefix == ""


def has(obj: Any, pointer: str) -> bool:
    return get(obj, pointer, _MISSING) is not _MISSING


def _step(node: Any, tok: str) -> Any:
    if isinstance(node, dict):
        return node.get(tok, _MISSING)
    if isinstance(node, list) and tok.isdigit():
        i = int(tok)
        return node[i] if i < len(node) else _MISSING
    return _MISSING


def _item_matches(item: Any, selector: str) -> bool:
    field, _, value = selector.partition("=")
    return isinstance(item, dict) and field in item and str(item[field]) == value


def expand(obj: Any, pattern: str) -> Iterator[str]:
    """Every concrete pointer in ``obj`` that ``pattern`` (with ``*`` / ``key=value`` segments) selects."""

    def walk(node: Any, toks: list[str], at: str) -> Iterator[str]:
        if not toks:
            yield at
            return
        tok, rest = toks[0], toks[1:]
        if isinstance(node, dict):
            keys = list(node) if tok == "*" else ([tok] if tok in node else [])
            for k in keys:
                yield from walk(node[k], rest, child(at, k))
        elif isinstance(node, list):
            if tok == "*":
                idx = list(range(len(node)))
            elif tok.isdigit():
                idx = [int(tok)] if int(tok) < len(node) else []
            elif "=" in tok:
                idx = [i for i, it in enumerate(node) if _item_matches(it, tok)]
            else:
                idx = []
            for i in idx:
                yield from walk(node[i], rest, child(at, i))

    yield from walk(obj, split(pattern), "")


def remove(obj: Any, pointer: str) -> bool:
    """Delete the node at a concrete pointer, in place. Returns whether something was removed."""
    toks = split(pointer)
    if not toks:
        return False
    parent = obj
    for tok in toks[:-1]:
        parent = _step(parent, tok)
        if parent is _MISSING:
            return False
    last = toks[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
        return True
    return False


def remove_matching(obj: Any, patterns: list[str] | tuple[str, ...]) -> Any:
    """A deep copy of ``obj`` without what the patterns select. List items are removed last-first."""
    out = copy.deepcopy(obj)
    targets: list[str] = []
    for p in patterns:
        targets.extend(expand(out, p))
    # Deepest and highest index first, so earlier removals never shift later ones.
    for ptr in sorted(set(targets), key=_sort_key, reverse=True):
        remove(out, ptr)
    return out


def _sort_key(pointer: str) -> tuple[Any, ...]:
    return tuple((1, int(t), "") if t.isdigit() else (0, 0, t) for t in split(pointer))


def set_value(obj: Any, pointer: str, value: Any) -> bool:
    """Set a map key at a concrete pointer whose parent exists (creating intermediate maps). In place."""
    toks = split(pointer)
    if not toks:
        return False
    node = obj
    for tok in toks[:-1]:
        nxt = _step(node, tok)
        if nxt is _MISSING:
            if not isinstance(node, dict):
                return False
            nxt = node[tok] = {}
        node = nxt
    if isinstance(node, dict):
        node[toks[-1]] = value
        return True
    if isinstance(node, list) and toks[-1].isdigit() and int(toks[-1]) < len(node):
        node[int(toks[-1])] = value
        return True
    return False
