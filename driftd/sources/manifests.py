"""Kubernetes manifests from the files of a tree -> desired objects. Pure: bytes in, objects out.

Rules (the same for every environment):

- files ending ``.yaml``, ``.yml`` or ``.json`` below the environment's path are
  read; names starting with ``.`` (files or directories) are skipped;
- every document of a file counts; empty documents are skipped; ``kind: List``
  (and ``*List`` kinds with ``items``) are flattened;
- a directory holding ``kustomization.yaml`` (``.yml``, ``Kustomization``) is
  rendered by ``kubectl kustomize`` (see :mod:`kustomize`) and the files below
  it are not read individually; a kustomization that another one references
  (``resources``/``bases``/``components``) is rendered only through it;
- ``metadata.namespace`` defaults to the environment's namespace unless the
  kind is cluster-scoped. Without API discovery only built-in kinds are known
  to be cluster-scoped (:data:`CLUSTER_SCOPED_KINDS`); a cluster-scoped kind
  defined by a CRD gets the default namespace here and the kubernetes target
  corrects it through discovery;
- apiVersion, kind and metadata.name are required; the same object declared
  twice is an error naming both places.

``source`` of each object is ``path#N`` (N-th document of the file, from 0), or
``path#N.items[i]`` for an item of a List, or ``dir/kustomization.yaml#N`` for
the N-th object kustomize rendered.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DesiredStateError
from ..model import DesiredObject, ResourceKey, TargetKind
from ..names import kind_problem, name_problem, namespace_problem
from .yamlsafe import DEFAULT_LIMITS, Budget, Document, Limits, load_documents

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# Built-in kinds whose objects have no namespace. CRD-defined cluster-scoped kinds are not here:
# the kubernetes target corrects them through discovery.
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "StorageClass", "PriorityClass", "APIService", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "IngressClass", "RuntimeClass", "CSIDriver",
    "CSINode", "VolumeAttachment", "CertificateSigningRequest", "FlowSchema", "PriorityLevelConfiguration",
    "ComponentStatus", "IPAddress", "ServiceCIDR", "DeviceClass", "ResourceSlice", "VolumeAttributesClass",
    "ClusterTrustBundle", "SelfSubjectReview", "TokenReview", "SelfSubjectAccessReview", "SubjectAccessReview",
    "SelfSubjectRulesReview", "PodSecurityPolicy", "StorageVersion", "StorageVersionMigration",
})


@functools.lru_cache(maxsize=65536)  # asked per file per environment load; paths repeat across branches
def is_manifest_path(path: str) -> bool:
    return path.endswith(MANIFEST_SUFFIXES) and not any(p.startswith(".") for p in path.split("/"))


@dataclass(frozen=True)
class Parsed:
    """The documents of one file, or why it could not be read. Independent of the file's path, so cacheable by blob."""

    documents: tuple[Document, ...] = ()
    error: DesiredStateError | None = None
    sensitive: bool = False  # decrypted (SOPS): objects are marked sensitive
    size: int = 0  # bytes of the file: a cache hit is charged to the tree's budget like a fresh parse

    @property
    def nodes(self) -> int:
        return sum(d.nodes for d in self.documents)


def parse_file(data: bytes, file: str, limits: Limits = DEFAULT_LIMITS, budget: Budget | None = None) -> Parsed:
    try:
        return Parsed(tuple(load_documents(data, file, limits=limits, budget=budget)), size=len(data))
    except DesiredStateError as e:
        # cached with the blob: its traceback would keep the parser and the node graph alive
        e.__traceback__ = None
        return Parsed(error=e, size=len(data))


# --- kustomizations ---------------------------------------------------------------------------------


def kustomizations(paths: Iterable[str], read: Mapping[str, bytes]) -> dict[str, DesiredStateError | None]:
    """Kustomization files to render: those of directories no other kustomization references.

    ``paths`` are all file paths of the tree below the environment's path; ``read``
    gives the bytes of the kustomization files. A kustomization that does not parse
    maps to its error (its directory is still not read file by file).
    """
    found: dict[str, str] = {}  # dir -> kustomization file path
    for p in sorted(paths):
        d, _, base = p.rpartition("/")
        if base in KUSTOMIZATION_FILES and d not in found:
            found[d] = p
    referenced: set[str] = set()
    errors: dict[str, DesiredStateError] = {}
    for d, f in found.items():
        parsed = parse_file(read.get(f, b""), f)
        if parsed.error:
            errors[f] = parsed.error
            continue
        doc = parsed.documents[0].value if parsed.documents else None
        if not isinstance(doc, Mapping):
            errors[f] = DesiredStateError("a kustomization must be a mapping", file=f, line=1)
            continue
        for key in ("resources", "bases", "components"):
            entries = doc.get(key) or ()
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, str) and "://" not in entry:
                    target = posixpath.normpath(posixpath.join(d, entry))
                    if target in found and target != d:
                        referenced.add(target)
    return {f: errors.get(f) for d, f in sorted(found.items()) if d not in referenced}


def under_any(path: str, dirs: Sequence[str]) -> bool:
    if not dirs:  # the common case, called per file per load: skip building a generator
        return False
    return any(d == "" or path.startswith(d + "/") for d in dirs)


# --- documents -> objects -------------------------------------------------------------------------------


# One file's objects (or errors) with where each was declared, before the duplicate check across files.
_Built = list[tuple["DesiredObject | DesiredStateError", dict[str, Any]]]


class ObjectMemo:
    """Objects built from a file's parsed documents, shared by the environments that read the same parse
    result (the loader's blob cache hands out one object per blob) with the same path and namespace:
    the cold load of 50 branches holding the same 2,000 files builds each object once.
    Keyed by the documents' identity, which the entry keeps alive so the key cannot be reused; bounded
    by entries and by the YAML nodes it keeps alive (cleared whole when full: the simplest bound)."""

    def __init__(self, size: int = 20_000, max_nodes: int = 2_000_000) -> None:
        self.size = size
        self.max_nodes = max_nodes
        self.nodes = 0
        self._entries: dict[tuple[Any, ...], tuple[Sequence[Document], _Built]] = {}

    def get(self, key: tuple[Any, ...]) -> _Built | None:
        hit = self._entries.get(key)
        return hit[1] if hit is not None else None

    def put(self, key: tuple[Any, ...], documents: Sequence[Document], built: _Built) -> None:
        nodes = sum(d.nodes for d in documents)
        if len(self._entries) >= self.size or self.nodes + nodes > self.max_nodes:
            self._entries.clear()
            self.nodes = 0
        if nodes <= self.max_nodes:
            self._entries[key] = (documents, built)
            self.nodes += nodes


@dataclass
class ManifestSet:
    """Accumulates objects from several files, catching duplicates across them."""

    namespace: str
    objects: list[DesiredObject] = field(default_factory=list)
    errors: list[DesiredStateError] = field(default_factory=list)
    _seen: dict[tuple[str, str, str, str], tuple[DesiredObject, int | None]] = field(default_factory=dict)
    memo: ObjectMemo | None = None

    def add_documents(self, documents: Sequence[Document], file: str, *, source_file: str | None = None,
                      namespace: str | None = None, sensitive: bool = False, memoize: bool = False) -> None:
        """Objects of one file (or one kustomize or Helm rendering, ``file`` being its kustomization or
        release file). ``namespace`` overrides the default namespace (a Helm release's). ``memoize``: the
        documents are a cached parse result that other loads share (never for decrypted ones)."""
        self.add_items(file_items(documents, file, namespace or self.namespace, source_file=source_file,
                                  sensitive=sensitive, memo=self.memo if memoize else None))

    def add_items(self, built: Iterable[tuple[DesiredObject | DesiredStateError, Mapping[str, Any] | None]]) -> None:
        """Objects (checked for duplicates) and errors, in order, as :func:`file_items` gives them."""
        for item, where in built:
            if isinstance(item, DesiredStateError):
                self.errors.append(item)
            else:
                assert where is not None
                self._accept(item, where)

    def extend_disjoint(self, objects: Sequence[DesiredObject], errors: Sequence[DesiredStateError],
                        seen: Mapping[tuple[str, str, str, str], tuple[DesiredObject, int | None]]) -> bool:
        """Objects already free of duplicates among themselves (``seen``: their identities), in bulk, when none
        was accepted before; False (nothing added) otherwise, and the caller adds them one by one."""
        if not self._seen.keys().isdisjoint(seen):
            return False
        self.objects.extend(objects)
        self.errors.extend(errors)
        self._seen.update(seen)
        return True

    @property
    def seen(self) -> Mapping[tuple[str, str, str, str], tuple[DesiredObject, int | None]]:
        return self._seen

    def _accept(self, obj: DesiredObject, where: Mapping[str, Any]) -> None:
        key = obj.key
        ident = (key.group, key.kind, key.namespace, key.name)
        if ident in self._seen:
            first, _ = self._seen[ident]
            ns = key.namespace
            self.errors.append(DesiredStateError(
                f"{key.kind} {ns + '/' if ns else ''}{key.name} is declared twice: in {obj.source} and in "
                f"{first.source}", **where))
            return
        self._seen[ident] = (obj, where["line"])
        self.objects.append(obj)


def file_items(documents: Sequence[Document], file: str, namespace: str, *, source_file: str | None = None,
               sensitive: bool = False, memo: ObjectMemo | None = None) -> _Built:
    """One file's objects and errors in document order, each with where it was declared, before the duplicate
    check across files; from ``memo`` when the same parse result was built before (never decrypted ones)."""
    memo = memo if not sensitive else None
    key = (id(documents), file, source_file, namespace)
    built = memo.get(key) if memo is not None else None
    if built is None:
        built = []
        for doc in documents:
            if doc.value is None:
                continue
            _build(doc.value, file, doc.line, doc.column, f"{source_file or file}#{doc.index}", namespace,
                   sensitive, built)
        if memo is not None:
            memo.put(key, documents, built)
    return built


def _build(value: Any, file: str, line: int, column: int, source: str, namespace: str,
           sensitive: bool, out: _Built) -> None:
    where = {"file": file, "line": line or None, "column": column or None}
    if not isinstance(value, Mapping):
        out.append((DesiredStateError(
            f"expected a Kubernetes object (a mapping), found {type(value).__name__}", **where), where))  # type: ignore[arg-type]
        return
    kind = value.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(value.get("items"), list):
        for i, item in enumerate(value["items"]):
            _build(item, file, line, column, f"{source}.items[{i}]", namespace, sensitive, out)
        return
    missing = _missing_fields(value)
    if missing:
        out.append((DesiredStateError(f"{_describe(value)}: {missing}", **where), where))  # type: ignore[arg-type]
        return
    api_version, meta = str(value["apiVersion"]), value["metadata"]
    kind = str(kind)
    name = str(meta["name"])
    ns: str = meta.get("namespace") or ""
    body: Mapping[str, Any] = value
    if kind in CLUSTER_SCOPED_KINDS:
        ns = ""
    elif not ns:
        ns = namespace
        # a new top level and metadata; the rest is shared with the parse cache (bodies are read-only)
        body = {**value, "metadata": {**meta, "namespace": ns}}
    invalid = kind_problem(kind) or name_problem(kind, name) or (namespace_problem(ns) if ns else None)
    if invalid:
        # never a request: the name would become an API path (another object, or one without dryRun)
        out.append((DesiredStateError(f"{kind} {name!r}: {invalid}", **where), where))  # type: ignore[arg-type]
        return
    key = ResourceKey(TargetKind.KUBERNETES, kind, name, ns, api_version)
    out.append((DesiredObject(key=key, body=body, source=source, sensitive=sensitive), where))


def _missing_fields(v: Mapping[str, Any]) -> str:
    problems = []
    for f in ("apiVersion", "kind"):
        if not isinstance(v.get(f), str) or not v.get(f):
            problems.append(f"{f} is missing" if f not in v else f"{f} must be a non-empty string")
    meta = v.get("metadata")
    if not isinstance(meta, Mapping):
        problems.append("metadata is missing" if meta is None else "metadata must be a mapping")
    else:
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            hint = " (generateName is not supported: driftd must know the name)" if "generateName" in meta else ""
            problems.append(("metadata.name is missing" if name is None else "metadata.name must be a non-empty string")
                            + hint)
        ns = meta.get("namespace")
        if ns is not None and not isinstance(ns, str):
            problems.append("metadata.namespace must be a string")
    return "; ".join(problems)


def _describe(v: Mapping[str, Any]) -> str:
    kind = v.get("kind") if isinstance(v.get("kind"), str) else "object"
    meta = v.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"{kind} {name}" if isinstance(name, str) and name else str(kind)


@dataclass(frozen=True)
class Rendering:
    """The output of a renderer other than kustomize (a Helm release), with its own default namespace."""

    file: str  # the file that declares it (errors point there)
    source: str  # prefix of the objects' ``source``
    namespace: str
    parsed: Parsed


def manifests_from_files(files: Mapping[str, Parsed], rendered: Mapping[str, Parsed], *,
                         namespace: str, renderings: Sequence[Rendering] = (),
                         skip: Callable[[str], bool] | None = None, memo: ObjectMemo | None = None
                         ) -> tuple[tuple[DesiredObject, ...], tuple[DesiredStateError, ...]]:
    """Objects of plain files (path -> parsed), of kustomize renderings (kustomization file -> parsed output)
    and of other ``renderings``. Plain files for which ``skip(path)`` holds (charts, values files) are not read.
    ``memo`` reuses the objects built from the same parse results (see :class:`ObjectMemo`)."""
    out = ManifestSet(namespace=namespace, memo=memo)
    for kfile in sorted(rendered):
        p = rendered[kfile]
        if p.error:
            out.errors.append(p.error)
        else:
            out.add_documents(p.documents, kfile)
    for r in renderings:
        if r.parsed.error:
            out.errors.append(r.parsed.error)
        else:
            out.add_documents(r.parsed.documents, r.file, source_file=r.source, namespace=r.namespace)
    dirs = [k.rpartition("/")[0] for k in rendered]
    for path in sorted(files):
        if not is_manifest_path(path) or under_any(path, dirs) or (skip is not None and skip(path)):
            continue
        p = files[path]
        if p.error:
            out.errors.append(p.error)
        else:
            out.add_documents(p.documents, path, sensitive=p.sensitive, memoize=True)
    return tuple(out.objects), tuple(out.errors)

