"""Edit values inside a YAML text at JSON pointers, keeping everything else byte for byte (pure).

``driftd adopt`` writes live values back into the manifest that declares an object. A YAML re-dump
would lose comments, key order, quoting and blank lines, so, as image write-back does with setter
comments, edits are made on the text: PyYAML's composer gives each node's position, and only the
span of the value that changes is rewritten (a scalar in place, keeping its quote style; a new key
inserted after the last key of its mapping at the same indentation; a removed key's lines deleted).
Flow collections (``{a: 1}``, ``[x]``) that change are rewritten as JSON, which is valid YAML.

Each edit is verified by parsing the result: the value at the pointer must be the one asked for,
or :class:`EditError` is raised (a wrong edit is never written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .. import jsonpointer as ptr

_DELETE = object()


class EditError(ValueError):
    """The edit cannot be made on this text (names the pointer and why)."""


def _docs(text: str) -> list[Node]:
    try:
        return [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as e:
        raise EditError(f"the file does not parse as YAML: {e}") from e


def _end(node: Node) -> int:
    """Where the node's content ends (a block collection's end mark lies at the next token)."""
    if isinstance(node, MappingNode) and node.value and not node.flow_style:
        return _end(node.value[-1][1])
    if isinstance(node, SequenceNode) and node.value and not node.flow_style:
        return _end(node.value[-1])
    return int(node.end_mark.index)


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _line_end(text: str, i: int) -> int:
    j = text.find("\n", i)
    return len(text) if j < 0 else j


def _indent_of_line(text: str, i: int) -> int:
    start = _line_start(text, i)
    return len(text[start:i]) - len(text[start:i].lstrip(" "))


def scalar(v: Any, style: str | None = None) -> str:
    """One scalar as YAML text; a string keeps the quote style it had (plain when it can)."""
    if isinstance(v, str) and "\n" not in v:
        if style == '"':
            return _json(v)
        if style == "'":
            return "'" + v.replace("'", "''") + "'"
    out = yaml.safe_dump(v, default_flow_style=True, width=1 << 30, allow_unicode=True)
    return out.removesuffix("\n...\n").rstrip("\n")


def _json(v: Any) -> str:
    import json

    return json.dumps(v, ensure_ascii=False)


def _block(v: Any, indent: int) -> list[str]:
    """A collection as block YAML lines, each indented by ``indent``."""
    out = yaml.safe_dump(v, default_flow_style=False, sort_keys=False, width=1 << 30, allow_unicode=True)
    return [" " * indent + line for line in out.rstrip("\n").split("\n")]


def _entry(key: str, v: Any, indent: int) -> list[str]:
    k = scalar(key)
    if isinstance(v, (dict, list)) and v:
        return [" " * indent + f"{k}:", *_block(v, indent + 2)]
    return [" " * indent + f"{k}: {_json(v) if isinstance(v, (dict, list)) else scalar(v)}"]


def _nest(tokens: Sequence[str], v: Any) -> Any:
    for tok in reversed(tokens):
        v = [v] if tok.isdigit() or tok == "-" else {tok: v}
    return v


def _find(node: Node, tok: str) -> tuple[int, Node] | None:
    if isinstance(node, MappingNode):
        for i, (k, v) in enumerate(node.value):
            if isinstance(k, ScalarNode) and k.value == tok:
                return i, v
        return None
    if isinstance(node, SequenceNode):
        if tok.isdigit() and int(tok) < len(node.value):
            return int(tok), node.value[int(tok)]
        return None
    raise EditError("a scalar has no children")


def _flow_replace(text: str, node: Node, new: Any) -> str:
    return text[:node.start_mark.index] + _json(new) + text[node.end_mark.index:]


def _edit_once(text: str, doc: int, prefix: Sequence[str], tokens: Sequence[str], value: Any) -> str:
    docs = _docs(text)
    if doc >= len(docs):
        raise EditError(f"document {doc} does not exist (the file has {len(docs)})")
    node: Node = docs[doc]
    for tok in prefix:
        found = _find(node, tok)
        if found is None:
            raise EditError(f"{ptr.join(list(prefix))} does not exist")
        node = found[1]
    parent: Node | None = None
    index = -1
    for i, tok in enumerate(tokens):
        try:
            found = _find(node, tok)
        except EditError as e:
            raise EditError(f"{ptr.join(list(tokens[:i]))} is a scalar, cannot hold {tok!r}") from e
        if found is None:
            if value is _DELETE:
                return text  # already absent
            return _insert(text, node, tokens[i], _nest(tokens[i + 1:], value))
        parent, (index, node) = node, found
    if value is _DELETE:
        if parent is None:
            raise EditError("cannot delete the whole object")
        return _delete(text, parent, index)
    return _replace(text, node, value)


def _replace(text: str, node: Node, value: Any) -> str:
    start, end = int(node.start_mark.index), _end(node)
    if isinstance(node, ScalarNode) and not isinstance(value, (dict, list)):
        if node.style in ("|", ">") or (isinstance(value, str) and "\n" in value):
            indent = _indent_of_line(text, start) + 2
            body = str(value)
            chomp = "" if body.endswith("\n") else "-"
            lines = body.rstrip("\n").split("\n")
            new = f"|{chomp}\n" + "\n".join(" " * indent + x if x else "" for x in lines)
            tail = "\n" if text[start:int(node.end_mark.index)].endswith("\n") else ""
            return text[:start] + new + tail + text[int(node.end_mark.index):]
        return text[:start] + scalar(value, node.style) + text[end:]
    if getattr(node, "flow_style", False) or not isinstance(value, (dict, list)) or not value:
        new = _json(value) if isinstance(value, (dict, list)) else scalar(value)
        return text[:start] + new + text[end:]
    if isinstance(node, ScalarNode):  # key: scalar -> key: <block>
        indent = _indent_of_line(text, start) + 2
        return text[:start].rstrip(" ") + "\n" + "\n".join(_block(value, indent)) + text[end:]
    # A block collection's span starts at its first key, or at its first item's "-".
    col = int(node.start_mark.column)
    lines = _block(value, col)
    return text[:start] + "\n".join([lines[0][col:], *lines[1:]]) + text[end:]


def _insert(text: str, parent: Node, tok: str, value: Any) -> str:
    if isinstance(parent, MappingNode):
        if parent.flow_style or not parent.value:
            new = yaml.safe_load(text[parent.start_mark.index:parent.end_mark.index]) or {}
            new[tok] = value
            return _flow_replace(text, parent, new)
        indent = int(parent.value[0][0].start_mark.column)
        at = _line_end(text, _end(parent))
        return text[:at] + "\n" + "\n".join(_entry(tok, value, indent)) + text[at:]
    assert isinstance(parent, SequenceNode)
    if parent.flow_style or not parent.value:
        new = yaml.safe_load(text[parent.start_mark.index:parent.end_mark.index]) or []
        new.append(value)
        return _flow_replace(text, parent, new)
    first = int(parent.value[0].start_mark.index)
    dash = text.rfind("-", _line_start(text, first), first) - _line_start(text, first)
    at = _line_end(text, _end(parent))
    if isinstance(value, (dict, list)) and value:
        lines = _block(value, dash + 2)
        item = [" " * dash + "- " + lines[0][dash + 2:], *lines[1:]]
    else:
        item = [" " * dash + "- " + (_json(value) if isinstance(value, (dict, list)) else scalar(value))]
    return text[:at] + "\n" + "\n".join(item) + text[at:]


def _delete(text: str, parent: Node, index: int) -> str:
    if getattr(parent, "flow_style", False):
        new = yaml.safe_load(text[parent.start_mark.index:parent.end_mark.index])
        if isinstance(new, dict):
            new.pop(list(new)[index])
        else:
            new.pop(index)
        return _flow_replace(text, parent, new)
    if isinstance(parent, MappingNode):
        k, v = parent.value[index]
        start, end = _line_start(text, int(k.start_mark.index)), _end(v)
    else:
        item = parent.value[index]
        start, end = _line_start(text, int(item.start_mark.index)), _end(item)
    end = _line_end(text, end)
    return text[:start] + text[min(len(text), end + 1):]


def set_value(text: str, doc: int, pointer: str, value: Any, *, prefix: str = "") -> str:
    """``text`` with the value at ``pointer`` (of document ``doc``, below ``prefix``) set to ``value``."""
    out = _edit_once(text, doc, ptr.split(prefix), ptr.split(pointer), value)
    _verify(out, doc, prefix + pointer, value)
    return out


def delete_value(text: str, doc: int, pointer: str, *, prefix: str = "") -> str:
    out = _edit_once(text, doc, ptr.split(prefix), ptr.split(pointer), _DELETE)
    _verify(out, doc, prefix + pointer, _DELETE)
    return out


def _verify(text: str, doc: int, pointer: str, value: Any) -> None:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise EditError(f"{pointer}: the edit would not parse ({e}); nothing written") from e
    got = ptr.get(docs[doc], pointer, _DELETE) if doc < len(docs) else _DELETE
    if got != value and not (value is _DELETE and got is _DELETE):
        raise EditError(f"{pointer}: the edit did not produce the value asked for; nothing written")
