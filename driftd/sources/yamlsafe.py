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

The limits are cumulative, not only per document: a file's documents share one
node budget, and a :class:`Budget` carries the nodes, bytes and documents of a
whole tree across its files (fifty alias-heavy documents each under the
per-document limit would otherwise expand to gigabytes). A budget is checked
before anything is constructed, and the refusal names the file and line where
it ran out.

Timestamps are left as strings, as Kubernetes' YAML -> JSON conversion does.

With ``cloudformation=True`` the short intrinsic-function tags (``!Ref``,
``!Sub``, ``!GetAtt a.b`` ...) become their long form (``{"Fn::Sub": ...}``).

Pure: bytes in, Python values or :class:`DesiredStateError` out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
    max_nodes: int = 250_000  # per document, counted with aliases expanded
    max_file_nodes: int = 500_000  # per file, all its documents, aliases expanded
    max_depth: int = 200  # nesting of collections
    max_files: int = 50_000  # per environment path
    max_total_bytes: int = 512 * MiB  # per environment path, every file read (git.py)
    # Per tree (an environment's path, kustomize output included): what is parsed as YAML. Nodes cost
    # 2.5-3.6 us of CPU each on a loaded 2-core machine (libyaml composes, Python builds; deep nesting is
    # the dearest), so 500,000 keeps any tree under ~2 s of CPU and ~60 MB (bench/bench_yaml.py); real
    # trees are far below (Argo CD's 1.9 MB install.yaml: 64,000 nodes; the largest CRD documents: tens
    # of thousands). Nodes composed for a refused document count too.
    max_tree_nodes: int = 500_000
    max_tree_bytes: int = 24 * MiB
    max_tree_documents: int = 50_000


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
    nodes: int = 0  # size with aliases expanded: what the document costs in memory and in budgets


    def where(self, *path: str) -> tuple[int, int]:
        """Line and column of the deepest known key along ``path`` (the document start if none)."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.marks:
                return self.marks[path[:n]]
        return self.line, self.column


class BudgetExceeded(DesiredStateError):
    """A tree's cumulative budget ran out at this file. Depends on the other files of the tree, so it is
    never cached with the file's blob (the same file may fit in another, smaller tree)."""


class Budget:
    """Nodes, bytes and documents parsed so far in one tree, against :class:`Limits`' ``max_tree_*``.

    One per tree load; files served from a parse cache are charged with :meth:`charge_parsed` so a cached
    tree costs the same as a fresh one.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.nodes = 0
        self.bytes = 0
        self.documents = 0

    def nodes_left(self) -> int:
        return self.limits.max_tree_nodes - self.nodes

    def charge_bytes(self, n: int, file: str) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_tree_bytes:
            raise BudgetExceeded(
                f"the tree's YAML exceeds {self.limits.max_tree_bytes:,} bytes at this file: refused "
                "(split the environment)", file=file)

    def charge_document(self, file: str, line: int | None, column: int | None) -> None:
        self.documents += 1
        if self.documents > self.limits.max_tree_documents:
            raise BudgetExceeded(
                f"the tree holds more than {self.limits.max_tree_documents:,} YAML documents: refused at this one",
                file=file, line=line, column=column)

    def charge_nodes(self, n: int, file: str, line: int | None, column: int | None) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_tree_nodes:
            raise BudgetExceeded(
                f"the tree expands to more than {self.limits.max_tree_nodes:,} YAML nodes (aliases counted at "
                "each use): refused at this document (split the environment, or raise daemon.max_tree_nodes)",
                file=file, line=line, column=column)

    def charge_parsed(self, docs: Sequence[Document], size: int, file: str) -> None:
        """A file parsed earlier (a cache hit) counts as if parsed again."""
        lim = self.limits
        nodes = sum(d.nodes for d in docs)
        if (self.bytes + size <= lim.max_tree_bytes and self.documents + len(docs) <= lim.max_tree_documents
                and self.nodes + nodes <= lim.max_tree_nodes):  # fits: no need to find where it would not
            self.bytes += size
            self.documents += len(docs)
            self.nodes += nodes
            return
        self.charge_bytes(size, file)
        for d in docs:
            self.charge_document(file, d.line or None, d.column or None)
            self.charge_nodes(d.nodes, file, d.line or None, d.column or None)


# --- the loader classes ----------------------------------------------------------------------


def _no_timestamps(cls: type[yaml.SafeLoader]) -> None:
    cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


class _ComposeCap(Exception):
    """More nodes composed than the tightest budget allows (raised from inside libyaml's composer)."""


class _Bounded(_Base):  # type: ignore[misc,valid-type]
    """Counts nodes while libyaml composes a document (every new node is resolved once; an alias reuses
    its node), so a document that could not fit is stopped before its node graph fills memory.
    ``_cap`` is set per document by :func:`load_documents`."""

    _cap = 0
    _composed = 0
    # plain scalar -> tag. Resolving runs regular expressions per scalar; manifests repeat the same few
    # thousand values. Per class (the Kubernetes and CloudFormation loaders resolve alike), bounded.
    _plain_tags: dict[str, str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        self._composed += 1
        if self._composed > self._cap:
            raise _ComposeCap
        if kind is ScalarNode and implicit[0]:
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(self._plain_tags) >= 20_000:
                    self._plain_tags.clear()
                self._plain_tags[value] = tag
            return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]

    # SafeLoader has no path resolvers: skip the per-node bookkeeping libyaml's composer calls.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


class _KubeLoader(_Bounded):
    _plain_tags: dict[str, str] = {}


class _CfnLoader(_Bounded):
    _plain_tags: dict[str, str] = {}


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
                   limits: Limits = DEFAULT_LIMITS, budget: Budget | None = None) -> list[Document]:
    """Every document in ``data`` (YAML, or JSON by extension), empty ones as ``value=None``.

    ``mark_depth`` > 0 records the locations of mapping keys that deep (:meth:`Document.where`).
    ``budget``: the tree's running totals, charged with this file (:class:`BudgetExceeded` when they run out).

    Raises DesiredStateError with the file, line and column of the first problem.
    """
    text = decode(data, file, limits)
    if budget is not None:
        budget.charge_bytes(len(data), file)
    if file.endswith(".json"):
        doc = _load_json(text, file)
        if budget is not None:
            budget.charge_document(file, 1, 1)
            budget.charge_nodes(doc.nodes, file, 1, 1)
        return [doc]
    loader = (_CfnLoader if cloudformation else _KubeLoader)(text)
    docs: list[Document] = []
    file_nodes = 0
    try:
        index = 0
        while loader.check_node():
            # The tightest of the three budgets bounds composing (distinct nodes) and then the expanded
            # size, both before anything is constructed.
            caps = [(limits.max_nodes, _DOC), (limits.max_file_nodes - file_nodes, _FILE)]
            if budget is not None:
                caps.append((budget.nodes_left(), _TREE))
            cap, what = min(caps, key=lambda c: c[0])
            loader._cap, loader._composed = cap, 0
            try:
                node = loader.get_node()
            except _ComposeCap:
                if budget is not None:  # the work spent counts, or a tree of refused files costs without bound
                    budget.nodes += loader._composed
                # where composing stopped: the next event is the first node past the budget
                mark = loader.get_event().start_mark
                line, column = mark.line + 1, mark.column + 1
                if what == _DOC:
                    raise DesiredStateError(f"document has more than {limits.max_nodes:,} nodes: refused here",
                                            file=file, line=line, column=column) from None
                raise _over_cap(file, limits, what, line, column) from None
            line = node.start_mark.line + 1 if node else None
            column = node.start_mark.column + 1 if node else None
            if index >= limits.max_documents:
                raise DesiredStateError(f"more than {limits.max_documents} documents in one file", file=file,
                                        line=line, column=column)
            if budget is not None:
                budget.charge_document(file, line, column)
            if node is None:  # an empty document ("---" followed by nothing)
                docs.append(Document(index, None, 0, 0))
            else:
                built = _fast_build(loader, node, limits.max_depth, cap)
                if built is None:  # aliases, merge keys, tags or a problem: the counting walk, then PyYAML
                    try:
                        size, shared = _check_graph(node, file, limits, cap, what)
                    except DesiredStateError:
                        if budget is not None:
                            budget.nodes += loader._composed
                        raise
                else:
                    value, size = built
                file_nodes += size
                if budget is not None:
                    budget.charge_nodes(size, file, line, column)
                if built is None:
                    value = loader.construct_document(node)
                    if shared:
                        value = _unshare(value)
                docs.append(Document(index, value, node.start_mark.line + 1, node.start_mark.column + 1,
                                     _marks(node, mark_depth) if mark_depth else {}, size))
            index += 1
    except DesiredStateError:
        raise
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
    return Document(0, value, 1, 1, {}, _json_size(value))


def _json_size(value: Any) -> int:
    n, todo = 0, [value]
    while todo:
        v = todo.pop()
        n += 1
        if isinstance(v, dict):
            todo.extend(v.values())
            n += len(v)  # the keys
        elif isinstance(v, list):
            todo.extend(v)
    return n


_MERGE = "tag:yaml.org,2002:merge"
_DOC, _FILE, _TREE = "document", "file", "tree"


def _check_graph(root: Node, file: str, limits: Limits, cap: int, what: str) -> tuple[int, bool]:
    """Size with aliases expanded, depth, cycles and duplicate keys: (size, whether any node is shared).

    Iterative post-order walk with a memo: each distinct node is visited once, so
    the cost is linear in the *composed* size even when the expanded size is huge.
    ``cap`` is the tightest budget left (``what``: the document's, the file's or the tree's).
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
            if total > cap:
                raise _over_budget(root, node, file, limits, what)
            size[nid] = total
    if size[id(root)] > cap:
        raise _over_budget(root, root, file, limits, what)
    return size[id(root)], shared


def _over_budget(root: Node, node: Node, file: str, limits: Limits, what: str) -> DesiredStateError:
    if what == _DOC:  # where the expansion happens: the collection whose aliases blow it up
        return _over_cap(file, limits, what, node.start_mark.line + 1, node.start_mark.column + 1)
    # a cumulative budget ran out: the document that did it
    return _over_cap(file, limits, what, root.start_mark.line + 1, root.start_mark.column + 1)


def _over_cap(file: str, limits: Limits, what: str, line: int, column: int) -> DesiredStateError:
    if what == _DOC:
        return DesiredStateError(
            f"document expands to more than {limits.max_nodes:,} nodes (aliases counted at each use): "
            "refused as an alias-expansion bomb", file=file, line=line, column=column)
    if what == _FILE:
        return DesiredStateError(
            f"the file's documents expand to more than {limits.max_file_nodes:,} nodes in total (aliases "
            "counted at each use): refused at this document", file=file, line=line, column=column)
    return BudgetExceeded(
        f"the tree expands to more than {limits.max_tree_nodes:,} YAML nodes (aliases counted at each use): "
        "refused at this document (split the environment, or raise daemon.max_tree_nodes)",
        file=file, line=line, column=column)


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_INT, _BOOL, _NULL = "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"


class _NotSimple(Exception):
    """The document needs the general path (:func:`_check_graph` + PyYAML's constructor)."""


def _fast_build(loader: _Bounded, root: Node, max_depth: int, cap: int) -> tuple[Any, int] | None:
    """Values and size of a document in one walk, for the common case: a tree (no node reached twice,
    so no alias), plain maps and sequences, no merge keys, no duplicate keys, within depth and ``cap``.
    None otherwise; the general path then produces the same values or the located error. Recursion is
    safe: depth is checked before descending, and ``max_depth`` is far below Python's recursion limit.
    """
    seen: set[int] = set()
    count = 0
    bools = loader.bool_values

    def build(node: Node, depth: int) -> Any:
        nonlocal count
        nid = id(node)
        if nid in seen or depth > max_depth:
            raise _NotSimple
        seen.add(nid)
        count += 1
        if count > cap:
            raise _NotSimple
        cls = node.__class__
        tag = node.tag
        if cls is ScalarNode:
            v = node.value
            if tag == _STR:
                return v
            if tag == _INT and v.isdigit() and (v[0] != "0" or v == "0"):
                return int(v)  # decimal without a leading zero (YAML 1.1 reads 0755 as octal: general path)
            if tag == _BOOL:
                return bools[v.lower()]
            if tag == _NULL:
                return None
            return loader.construct_object(node, deep=True)  # floats, other ints, tags (!Ref ...)
        if cls is SequenceNode and tag == _SEQ:
            return [build(c, depth + 1) for c in node.value]
        if cls is MappingNode and tag == _MAP:
            out: dict[Any, Any] = {}
            for k, v in node.value:
                if k.__class__ is not ScalarNode or k.tag == _MERGE:
                    raise _NotSimple
                key = build(k, depth + 1)
                if key in out:
                    raise _NotSimple  # a duplicate key (or two spellings of one): located by the general path
                out[key] = build(v, depth + 1)
            return out
        raise _NotSimple

    try:
        value = build(root, 1)
    except _NotSimple:
        return None
    finally:
        loader.constructed_objects = {}
        loader.recursive_objects = {}
    return value, count


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
