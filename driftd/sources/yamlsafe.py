"""A bounded YAML loader: every document of a file, with locations, and limits that hold.

``yaml.safe_load`` is safe against code execution but not against size: a
"billion laughs" document (anchors of lists of aliases of lists ...) is a few
hundred bytes that expands to billions of nodes as soon as anything walks it
(json.dumps, a diff, a deepcopy). This loader composes each document into a
node graph first, counts its size *as expanded* (every alias use counts the
whole aliased subtree) with memoization, and refuses the document beyond a
limit before constructing anything. It also refuses recursive aliases,
duplicate mapping keys (Kubernetes' own YAML decoder does), non-UTF-8 input,
oversized files and files with too many documents.

Timestamps are left as strings, as Kubernetes' YAML -> JSON conversion does.

With ``cloudformation=True`` the short intrinsic-function tags (``!Ref``,
``!Sub``, ``!GetAtt a.b`` ...) become their long form (``{"Fn::Sub": ...}``).

Pure: bytes in, Python values or :class:`DesiredStateError` out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import DesiredStateError

try:  # libyaml is ~10x faster; the pure-Python loader is a fallback with the same behaviour
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover
    _Base = yaml.SafeLoader

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what one tree and one file may hold. Defaults suit real repositories with a wide margin."""

    max_file_bytes: int = 4 * MiB
    max_documents: int = 1000  # per file
    max_nodes: int = 500_000  # per document, counted with aliases expanded
    max_depth: int = 200  # nesting of collections
    max_files: int = 50_000  # per environment path
    max_total_bytes: int = 512 * MiB  # per environment path


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Document:
    """One parsed document. ``index`` counts from 0 over the file's documents, empty ones included."""

    index: int
    value: Any
    line: int  # 1-based, where the document's root node starts
    column: int
    # (key, key, ...) -> (line, column) of mapping keys down to the depth asked for (``mark_depth``)
    marks: Mapping[tuple[str, ...], tuple[int, int]] = field(default_factory=dict)

    def where(self, *path: str) -> tuple[int, int]:
        """Line and column of the deepest known key along ``path`` (the document start if none)."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.marks:
                return self.marks[path[:n]]
        return self.line, self.column


# --- the loader classes ----------------------------------------------------------------------


def _no_timestamps(cls: type[yaml.SafeLoader]) -> None:
    cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


class _KubeLoader(_Base):  # type: ignore[misc,valid-type]
    pass


class _CfnLoader(_Base):  # type: ignore[misc,valid-type]
    pass


_no_timestamps(_KubeLoader)
_no_timestamps(_CfnLoader)


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: Node) -> Any:
    value: Any
    if isinstance(node, ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


# --- public API --------------------------------------------------------------------------------


def decode(data: bytes, file: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """UTF-8 text of a file, or DesiredStateError naming where the first bad byte is."""
    if len(data) > limits.max_file_bytes:
        raise DesiredStateError(
            f"file is {len(data):,} bytes, over the limit of {limits.max_file_bytes:,}", file=file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DesiredStateError(f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} is invalid",
                                file=file, line=line, column=col) from None
    return text.removeprefix("\ufeff")


def load_documents(data: bytes, file: str, *, cloudformation: bool = False, mark_depth: int = 0,
                   limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Every document in ``data`` (YAML, or JSON by extension), empty ones as ``value=None``.

    ``mark_depth`` > 0 records the locations of mapping keys that deep (:meth:`Document.where`).

    Raises DesiredStateError with the file, line and column of the first problem.
    """
    text = decode(data, file, limits)
    if file.endswith(".json"):
        return [_load_json(text, file)]
    loader = (_CfnLoader if cloudformation else _KubeLoader)(text)
    docs: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if index >= limits.max_documents:
                raise DesiredStateError(f"more than {limits.max_documents} documents in one file", file=file,
                                        line=node.start_mark.line + 1 if node else None,
                                        column=node.start_mark.column + 1 if node else None)
            if node is None:  # an empty document ("---" followed by nothing)
                docs.append(Document(index, None, 0, 0))
            else:
                shared = _check_graph(node, file, limits)
                value = loader.construct_document(node)
                if shared:
                    value = _unshare(value)
                docs.append(Document(index, value, node.start_mark.line + 1, node.start_mark.column + 1,
                                     _marks(node, mark_depth) if mark_depth else {}))
            index += 1
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise DesiredStateError(f"invalid YAML: {what}", file=file,
                                line=mark.line + 1 if mark else None,
                                column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise DesiredStateError(f"invalid YAML: {e}", file=file) from None
    except RecursionError:
        raise DesiredStateError(f"YAML nested too deeply (limit {limits.max_depth})", file=file) from None
    finally:
        loader.dispose()
    return docs


def relocate(err: DesiredStateError, file: str) -> DesiredStateError:
    """The same problem in another file holding identical bytes (parse results are cached per blob)."""
    return DesiredStateError(err.message, file=file, line=err.line, column=err.column)


# --- internals ----------------------------------------------------------------------------------


def _load_json(text: str, file: str) -> Document:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    try:
        value = json.loads(text, object_pairs_hook=pairs) if text.strip() else None
    except json.JSONDecodeError as e:
        raise DesiredStateError(f"invalid JSON: {e.msg}", file=file, line=e.lineno, column=e.colno) from None
    except ValueError as e:  # duplicate key: json gives no position, the message names the key
        raise DesiredStateError(f"invalid JSON: {e}", file=file) from None
    except RecursionError:
        raise DesiredStateError("JSON nested too deeply", file=file) from None
    return Document(0, value, 1, 1)


_MERGE = "tag:yaml.org,2002:merge"


def _check_graph(root: Node, file: str, limits: Limits) -> bool:
    """Size with aliases expanded, depth, cycles and duplicate keys. Returns whether any node is shared.

    Iterative post-order walk with a memo: each distinct node is visited once, so
    the cost is linear in the *composed* size even when the expanded size is huge.
    """
    size: dict[int, int] = {}
    in_progress: set[int] = set()
    shared = False
    # stack entries: (node, depth, children_pushed)
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        nid = id(node)
        if not expanded:
            if nid in size:
                shared = True
                continue
            if nid in in_progress:
                raise DesiredStateError("recursive YAML alias (a node that contains itself)", file=file,
                                        line=node.start_mark.line + 1, column=node.start_mark.column + 1)
            if depth > limits.max_depth:
                raise DesiredStateError(f"YAML nested deeper than {limits.max_depth} levels", file=file,
                                        line=node.start_mark.line + 1, column=node.start_mark.column + 1)
            if isinstance(node, ScalarNode):
                size[nid] = 1
                continue
            in_progress.add(nid)
            stack.append((node, depth, True))
            for child in _children(node, file):
                if id(child) in size:
                    shared = True
                else:
                    stack.append((child, depth + 1, False))
        else:
            in_progress.discard(nid)
            total = 1 + sum(size[id(c)] for c in _children(node, file, check=False))
            if total > limits.max_nodes:
                raise DesiredStateError(
                    f"document expands to more than {limits.max_nodes:,} nodes (aliases counted at each use): "
                    "refused as an alias-expansion bomb", file=file,
                    line=node.start_mark.line + 1, column=node.start_mark.column + 1)
            size[nid] = total
    return shared


def _children(node: Node, file: str, check: bool = True) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        out: list[Node] = []
        seen: dict[tuple[str, str], Node] = {}
        for k, v in node.value:
            if check and isinstance(k, ScalarNode) and k.tag != _MERGE:
                ident = (k.tag, k.value)
                if ident in seen:
                    first = seen[ident]
                    raise DesiredStateError(
                        f"duplicate key {k.value!r} (first at line {first.start_mark.line + 1})", file=file,
                        line=k.start_mark.line + 1, column=k.start_mark.column + 1)
                seen[ident] = k
            out.append(k)
            out.append(v)
        return out
    return []


def _marks(root: Node, depth: int) -> dict[tuple[str, ...], tuple[int, int]]:
    out: dict[tuple[str, ...], tuple[int, int]] = {}
    todo: list[tuple[Node, tuple[str, ...]]] = [(root, ())]
    while todo:
        node, prefix = todo.pop()
        if not isinstance(node, MappingNode) or len(prefix) >= depth:
            continue
        for k, v in node.value:
            if isinstance(k, ScalarNode):
                path = (*prefix, str(k.value))
                out[path] = (k.start_mark.line + 1, k.start_mark.column + 1)
                todo.append((v, path))
    return out


def _unshare(value: Any) -> Any:
    """A tree copy of a DAG built from aliases, so no two paths share one mutable object."""
    if isinstance(value, dict):
        return {k: _unshare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshare(v) for v in value]
    return value
