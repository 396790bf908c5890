"""RFC 6901 JSON pointers over plain JSON-like data: the primitives every layer needs.

Below both ``driftd.diff`` (reported paths, ignore-rule patterns: :mod:`driftd.diff.pointer`) and
``driftd.policy`` (the YAML editor adopt uses), which as independent siblings cannot share a module.
"""

from __future__ import annotations

from typing import Any


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def split(pointer: str) -> list[str]:
    """``/a/b~1c`` -> ``["a", "b/c"]``. Raises ValueError for a pointer not starting with ``/``."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/', found {pointer!r}")
    return [unescape(t) for t in pointer[1:].split("/")]


def join(tokens: list[str] | tuple[str, ...]) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


def get(obj: Any, pointer: str, default: Any = None) -> Any:
    """The node at ``pointer``, or ``default`` where there is none (a list item by its index)."""
    node = obj
    for tok in split(pointer):
        if isinstance(node, dict) and tok in node:
            node = node[tok]
        elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
            node = node[int(tok)]
        else:
            return default
    return node
