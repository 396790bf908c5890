"""A plain Kubernetes tree loaded from its directories' results, reused by tree id across branches and commits.

Fifty branches of one repository usually differ in a file or two: their environment trees have different
ids, but almost all of their directories are the same tree objects. The loader's caches so far were per
whole tree and per file, so each branch still walked, charged and assembled its 2,000 files one by one.
Here a directory's share of the result (its objects, errors, duplicate-check identities and budget totals)
is kept by (tree id, path, namespace) and reused whole, so a branch costs its changed directories.

Only *plain* trees: no kustomization, no Helm release file, no SOPS-encrypted manifest, no symlink or
submodule, nothing over the file or tree size limits and nothing over the tree's YAML budget. Anything
else raises :class:`NotPlain` and the loader takes its general path, which is the reference: for a plain
tree this module returns exactly what that path does (the same objects in the same order, the same
errors), and it never reads past a limit the general path enforces:

- files are parsed in path order with the tree's :class:`~.yamlsafe.Budget`; a reused directory is
  charged with its totals before anything after it is parsed (the totals of what the general path would
  charge for the same files from its blob cache), and the first charge that does not fit stops the walk;
- file counts and bytes are checked as the walk goes, against the repository cache's limits.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import DesiredStateError
from ..model import DesiredObject
from .git import TreeEntry, entry_kind
from .helm import is_release_file
from .manifests import KUSTOMIZATION_FILES, ManifestSet, ObjectMemo, Parsed, file_items, is_manifest_path, parse_file
from .sops import is_encrypted
from .yamlsafe import Budget, BudgetExceeded, Limits, relocate

_Item = tuple[DesiredObject | DesiredStateError, Mapping[str, Any] | None]
_Ident = tuple[str, str, str, str]


@dataclass(frozen=True)
class Refusal:
    """A file the walk parsed fresh and the tree's budget refused: the general path, reaching the same file with
    the same budget spent (``before``), gets the same result without parsing it again (``after``: the budget
    then), so a refused tree costs its refused file once, as without the walk."""

    path: str
    blob: str
    before: tuple[int, int, int]  # (nodes, bytes, documents) of the tree's budget
    after: tuple[int, int, int]
    parsed: Parsed


class NotPlain(Exception):
    """The tree needs the loader's general path (kustomize, Helm, SOPS, a refused entry or a limit)."""

    def __init__(self, refusal: Refusal | None = None) -> None:
        super().__init__()
        self.refusal = refusal


def budget_state(b: Budget) -> tuple[int, int, int]:
    return b.nodes, b.bytes, b.documents


class Reader(Protocol):
    def entries(self, tree: str) -> list[TreeEntry]: ...
    def blob(self, blob: str) -> bytes: ...


class BlobCache(Protocol):
    def get_fresh(self, key: tuple[str, str]) -> Parsed | None: ...
    def put(self, key: tuple[str, str], value: Parsed, cost: int = 0) -> None: ...


class SegmentCache(Protocol):
    def get_fresh(self, key: tuple[Any, ...]) -> Segment | None: ...
    def put(self, key: tuple[Any, ...], value: Segment, cost: int = 0) -> None: ...


@dataclass(frozen=True)
class Segment:
    """One directory's share of a plain tree's load, in path order."""

    items: tuple[_Item, ...]  # objects and errors before the duplicate check, to replay when it finds any
    objects: tuple[DesiredObject, ...]  # accepted, when ``clean``
    errors: tuple[DesiredStateError, ...]
    seen: Mapping[_Ident, tuple[DesiredObject, int | None]]
    clean: bool  # no duplicate inside: ``objects``/``errors``/``seen`` can be added in bulk
    nodes: int  # what the general path charges the tree's budget for these files (cache hits)
    bytes: int
    documents: int
    files: int  # regular files, counted against the repository's file limit
    file_bytes: int  # bytes of every file, against its byte limit
    cost: int  # YAML nodes kept alive (the segment cache's bound)


class _Acc:
    """A segment being assembled from files and sub-segments in path order."""

    def __init__(self, namespace: str) -> None:
        self.set = ManifestSet(namespace=namespace)
        self.items: list[_Item] = []
        self.raw_objects = 0
        self.nodes = self.bytes = self.documents = self.files = self.file_bytes = 0

    def add(self, items: Sequence[_Item]) -> None:
        self.items.extend(items)
        self.raw_objects += sum(1 for item, _ in items if not isinstance(item, DesiredStateError))
        self.set.add_items(items)

    def add_segment(self, seg: Segment) -> None:
        self.items.extend(seg.items)
        self.raw_objects += len(seg.objects) if seg.clean else \
            sum(1 for item, _ in seg.items if not isinstance(item, DesiredStateError))
        if not (seg.clean and self.set.extend_disjoint(seg.objects, seg.errors, seg.seen)):
            self.set.add_items(seg.items)

    def done(self) -> Segment:
        return Segment(tuple(self.items), tuple(self.set.objects), tuple(self.set.errors), self.set.seen,
                       len(self.set.objects) == self.raw_objects, self.nodes, self.bytes, self.documents,
                       self.files, self.file_bytes, self.nodes + 1)


class PlainTreeLoader:
    """Loads plain trees (see the module docstring); one per :class:`~.loader.DesiredStateLoader`.

    ``segments``: the cache of directory results, bounded by the caller (entries and YAML nodes)."""

    def __init__(self, segments: SegmentCache, blobs: BlobCache, memo: ObjectMemo, limits: Limits) -> None:
        self.segments = segments
        self.blobs = blobs
        self.memo = memo
        self.limits = limits
        self.parse_count = 0
        self.reused = 0  # directories served from the segment cache (tests and benchmarks read it)
        self._lock = threading.Lock()

    def load(self, reader: Reader, tree: str, path: str, namespace: str, repo_key: str, repo_limits: Limits
             ) -> tuple[tuple[DesiredObject, ...], tuple[DesiredStateError, ...]]:
        """(objects, errors) of the tree ``tree`` at ``path``, as the general path gives them; raises NotPlain."""
        # One walk at a time: they share the caches and counters, and hold the GIL almost throughout anyway.
        with self._lock:
            walk = _Walk(self, reader, namespace, repo_key, repo_limits, Budget(self.limits))
            seg = walk.segment(tree, path, cache=False)
            for key, p in walk.failed.items():
                self.blobs.put(key, p, 1)
            return seg.objects, seg.errors


def _order(e: TreeEntry) -> str:
    return e.name + "/" if entry_kind(e.mode) == "dir" else e.name


class _Walk:
    def __init__(self, owner: PlainTreeLoader, reader: Reader, namespace: str, repo_key: str,
                 repo_limits: Limits, budget: Budget) -> None:
        self.owner, self.reader, self.namespace = owner, reader, namespace
        self.repo_key, self.repo_limits, self.budget = repo_key, repo_limits, budget
        self.files = 0
        self.file_bytes = 0
        # Files that do not parse, cached only once the walk is through: a fresh parse charges the tree what it
        # composed before the error, a cached error charges nothing, so a walk that gives up (NotPlain) leaves
        # them for the general path to parse (and charge) as it would have without this walk.
        self.failed: dict[tuple[str, str], Parsed] = {}

    def segment(self, tree: str, path: str, *, cache: bool = True) -> Segment:
        key = ("seg", self.repo_key, tree, path, self.namespace)
        hit = self.owner.segments.get_fresh(key) if cache else None
        if hit is not None:
            self._count(hit.files, hit.file_bytes)
            b, lim = self.budget, self.budget.limits
            if (b.bytes + hit.bytes > lim.max_tree_bytes or b.documents + hit.documents > lim.max_tree_documents
                    or b.nodes + hit.nodes > lim.max_tree_nodes):
                raise NotPlain  # the general path finds which file does not fit
            self.owner.reused += 1
            b.bytes += hit.bytes
            b.documents += hit.documents
            b.nodes += hit.nodes
            return hit
        acc = _Acc(self.namespace)
        # path order, as the general path sorts full paths: a directory's files sort as "name/..."
        entries = sorted(self.reader.entries(tree), key=_order)
        for e in entries:
            full = f"{path}/{e.name}" if path else e.name
            kind = entry_kind(e.mode)
            if kind == "dir":
                acc.add_segment(self._sub(self.segment(e.sha, full), acc))
            elif kind != "file" or e.name in KUSTOMIZATION_FILES or is_release_file(full):
                raise NotPlain
            else:
                self._file(full, e.sha, acc)
        seg = acc.done()
        if cache:
            self.owner.segments.put(key, seg, seg.cost)
        return seg

    @staticmethod
    def _sub(seg: Segment, acc: _Acc) -> Segment:
        acc.nodes += seg.nodes
        acc.bytes += seg.bytes
        acc.documents += seg.documents
        acc.files += seg.files
        acc.file_bytes += seg.file_bytes
        return seg

    def _count(self, files: int, nbytes: int) -> None:
        self.files += files
        self.file_bytes += nbytes
        if self.files > self.repo_limits.max_files or self.file_bytes > self.repo_limits.max_total_bytes:
            raise NotPlain  # the general path stops reading there, with its own problem

    def _file(self, full: str, blob: str, acc: _Acc) -> None:
        owner = self.owner
        acc.files += 1
        key = ("k8s", blob)
        cached = (owner.blobs.get_fresh(key) or self.failed.get(key)) if is_manifest_path(full) else None
        if cached is None:
            raw = self.reader.blob(blob)
            if len(raw) > self.repo_limits.max_file_bytes:
                raise NotPlain
            self._count(1, len(raw))
            acc.file_bytes += len(raw)
            if not is_manifest_path(full):
                return
            before = budget_state(self.budget)
            p = parse_file(raw, full, owner.limits, self.budget)
            owner.parse_count += 1
            if isinstance(p.error, BudgetExceeded):  # not cached: whether a file fits depends on the rest of its tree
                raise NotPlain(Refusal(full, blob, before, budget_state(self.budget), p))
            if p.error is not None:
                self.failed[key] = p
                acc.add([(p.error, None)])
                return
            owner.blobs.put(key, p, 1 + p.nodes)
        else:
            if cached.size > self.repo_limits.max_file_bytes:
                raise NotPlain
            self._count(1, cached.size)
            acc.file_bytes += cached.size
            if cached.error is not None:
                acc.add([(relocate(cached.error, full), None)])
                return
            try:
                self.budget.charge_parsed(cached.documents, cached.size, full)
            except BudgetExceeded:
                raise NotPlain from None
            p = cached
        if is_encrypted(p.documents):
            raise NotPlain
        acc.nodes += p.nodes
        acc.bytes += p.size
        acc.documents += len(p.documents)
        acc.add(file_items(p.documents, full, self.namespace, memo=owner.memo))
