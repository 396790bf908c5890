"""An environment's desired state at its branch's current commit, parsed as little as possible.

Three caches make steady state cheap:

1. per environment: the commit, the tree ids of its kubernetes and aws paths and
   the resulting state. Same commit -> the same state, no work at all. New commit
   but the same tree ids -> the same objects under the new revision, no parsing;
2. per (tree id, settings): a tree parsed for one environment serves every other
   environment whose branch holds the same tree;
3. per blob: the documents of a file, so a commit that changes one file of
   2,000 re-parses one file.

Failure semantics: a fetch that failed, a branch that disappeared, a path that
does not exist, or any file that does not parse gives a :class:`LoadResult`
with ``error`` set and ``state`` None, never a partial state. The last good
revision is kept in the result. Other environments of the same repository load
independently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio.to_thread

from ..config import EnvironmentSettings
from ..errors import DesiredStateError, SourceError
from ..log import get_logger
from ..model import AwsDeclaration, DesiredObject, DesiredState
from .declarations import (
    Context,
    check_duplicates,
    declarations_from_template,
    is_template_path,
    parse_template_documents,
)
from .git import RepositoryCache, TreeFile, TreeSnapshot
from .kustomize import Kustomizer
from .manifests import (
    KUSTOMIZATION_FILES,
    Parsed,
    is_manifest_path,
    kustomizations,
    manifests_from_files,
    parse_file,
    under_any,
)
from .yamlsafe import DEFAULT_LIMITS, Document, Limits, relocate

log = get_logger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class LoadResult:
    """Either ``state`` (complete) or ``error`` (with ``problems`` listing each bad file), never both."""

    environment: str
    revision: str | None  # the commit that was read (None when the branch could not be resolved)
    state: DesiredState | None = None
    error: str | None = None
    problems: tuple[DesiredStateError, ...] = ()
    last_good_revision: str | None = None
    parsed: bool = False  # False: served from the caches without parsing anything

    @property
    def ok(self) -> bool:
        return self.state is not None


@dataclass(frozen=True)
class _EnvEntry:
    commit: str
    settings_key: tuple[Any, ...]
    kube_tree: str | None
    aws_tree: str | None
    state: DesiredState


class _Lru(OrderedDict[K, V]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_fresh(self, key: K) -> V | None:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class DesiredStateLoader:
    """Loads environments' desired state from their repositories' caches (which the caller fetches)."""

    def __init__(self, repositories: Mapping[str, RepositoryCache], *, kustomizer: Kustomizer | None = None,
                 supported_aws_types: frozenset[str] | None = None, limits: Limits = DEFAULT_LIMITS,
                 blob_cache_size: int = 200_000, tree_cache_size: int = 512) -> None:
        self.repositories = repositories
        self.kustomizer = kustomizer or Kustomizer()
        self.supported_aws_types = supported_aws_types
        self.limits = limits
        self._envs: dict[str, _EnvEntry] = {}
        self._last_good: dict[str, str] = {}
        self._blobs: _Lru[tuple[str, str], Parsed | list[Document] | DesiredStateError] = _Lru(blob_cache_size)
        self._trees: _Lru[tuple[Any, ...], tuple[tuple[Any, ...], tuple[DesiredStateError, ...], tuple[str, ...]]] = \
            _Lru(tree_cache_size)
        self.parse_count = 0  # files parsed since start (tests and benchmarks read it)

    def last_good_revision(self, env: str) -> str | None:
        return self._last_good.get(env)

    async def load(self, env: EnvironmentSettings, *, account_id: str = "", region: str = "") -> LoadResult:
        """The desired state of ``env`` at its branch's commit as of the repository's last fetch."""
        last_good = self._last_good.get(env.name)
        cache = self.repositories.get(env.repository)
        if cache is None:
            return LoadResult(env.name, None, error=f"no repository named {env.repository!r}",
                              last_good_revision=last_good)
        if cache.last_error is not None:
            return LoadResult(env.name, None, error=str(cache.last_error), last_good_revision=last_good)
        try:
            commit = cache.resolve(env.branch)
        except SourceError as e:
            return LoadResult(env.name, None, error=str(e), last_good_revision=last_good)
        try:
            result = await self._load(cache, env, commit, account_id, region)
        except SourceError as e:
            return LoadResult(env.name, commit, error=str(e), last_good_revision=last_good)
        if result.ok:
            self._last_good[env.name] = commit
            return replace(result, last_good_revision=commit)
        return replace(result, last_good_revision=last_good)

    async def _load(self, cache: RepositoryCache, env: EnvironmentSettings, commit: str,
                    account_id: str, region: str) -> LoadResult:
        kube, aws = env.kubernetes, env.aws
        settings_key = (
            cache.url,
            (kube.path, kube.namespace) if kube else None,
            (aws.path, tuple(sorted(aws.parameters.items())), account_id, region, env.name) if aws else None,
            self.supported_aws_types,
        )
        prev = self._envs.get(env.name)
        if prev and prev.commit == commit and prev.settings_key == settings_key:
            return LoadResult(env.name, commit, state=prev.state)
        kube_tree = await cache.tree_id(commit, kube.path) if kube else None
        aws_tree = await cache.tree_id(commit, aws.path) if aws else None
        if prev and prev.settings_key == settings_key and (prev.kube_tree, prev.aws_tree) == (kube_tree, aws_tree):
            state = replace(prev.state, revision=commit)
            self._envs[env.name] = replace(prev, commit=commit, state=state)
            return LoadResult(env.name, commit, state=state)

        problems: list[DesiredStateError] = []
        warnings: list[str] = []
        objects: tuple[DesiredObject, ...] = ()
        decls: tuple[AwsDeclaration, ...] = ()
        parsed = False
        if kube:
            if kube_tree is None:
                problems.append(_missing_dir(kube.path, commit, "environments.kubernetes.path"))
            else:
                kkey: tuple[Any, ...] = ("k8s", kube_tree, kube.namespace)
                hit = self._trees.get_fresh(kkey)
                if hit is None:
                    snap = await cache.read_tree(commit, kube.path, known=lambda b: ("k8s", b) in self._blobs)
                    hit = await self._kubernetes(cache, snap, kube.namespace)
                    self._trees.put(kkey, hit)
                    parsed = True
                objects, errs, _ = hit
                problems.extend(errs)
        if aws:
            if aws_tree is None:
                problems.append(_missing_dir(aws.path, commit, "environments.aws.path"))
            else:
                ctx = Context(region=region, account_id=account_id, stack_name=env.name,
                              parameters=dict(aws.parameters), supported_types=self.supported_aws_types)
                akey: tuple[Any, ...] = ("aws", aws_tree, *settings_key[2:])
                ahit = self._trees.get_fresh(akey)
                if ahit is None:
                    snap = await cache.read_tree(commit, aws.path, known=lambda b: ("cfn", b) in self._blobs)
                    fresh = await anyio.to_thread.run_sync(self._aws, cache, snap, ctx)
                    self._trees.put(akey, fresh)
                    parsed = True
                    ahit = fresh
                decls, errs, warns = ahit
                problems.extend(errs)
                warnings.extend(warns)
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            return LoadResult(env.name, commit, error=f"desired state does not parse: {first}{more}",
                              problems=tuple(problems), parsed=parsed)
        state = DesiredState(revision=commit, kubernetes=objects, aws=decls, warnings=tuple(warnings))
        self._envs[env.name] = _EnvEntry(commit, settings_key, kube_tree, aws_tree, state)
        return LoadResult(env.name, commit, state=state, parsed=parsed)

    # --- kubernetes ------------------------------------------------------------------------------------

    async def _kubernetes(self, cache: RepositoryCache, snap: TreeSnapshot, namespace: str
                          ) -> tuple[tuple[DesiredObject, ...], tuple[DesiredStateError, ...], tuple[str, ...]]:
        problems = list(snap.problems)
        kfiles = [f for f in snap.files if f.path.rpartition("/")[2] in KUSTOMIZATION_FILES]
        data: dict[str, bytes] = {f.path: f.data for f in snap.files if f.data is not None}
        if kfiles:
            # kustomize needs every file of its directories as bytes, parsed-and-cached or not
            kdirs = [f.path.rpartition("/")[0] for f in kfiles]
            need = {f.blob: f.path for f in snap.files if f.data is None and under_any(f.path, kdirs)}
            if need:
                blobs = await cache.read_blobs(need)
                for blob, path in need.items():
                    data[path] = blobs[blob]
        files = await anyio.to_thread.run_sync(self._parse_manifests, cache, snap.files, data)
        rendered: dict[str, Parsed] = {}
        if kfiles:
            todo = kustomizations([f.path for f in snap.files], data)
            to_render = [k for k, err in todo.items() if err is None]
            for k, err in todo.items():
                if err is not None:
                    rendered[k] = Parsed(error=err)
            outputs = await self.kustomizer.render(data, to_render)
            for k, out in outputs.items():
                rendered[k] = Parsed(error=out) if isinstance(out, DesiredStateError) else \
                    parse_file(out, k, self.limits)
                self.parse_count += 1
        objects, errs = manifests_from_files(files, rendered, namespace=namespace)
        problems.extend(errs)
        return objects, tuple(problems), ()

    def _parse_manifests(self, cache: RepositoryCache, entries: tuple[TreeFile, ...],
                         data: Mapping[str, bytes]) -> dict[str, Parsed]:
        out: dict[str, Parsed] = {}
        for f in entries:
            if not is_manifest_path(f.path):
                continue
            cached = self._blobs.get_fresh(("k8s", f.blob))
            if isinstance(cached, Parsed):
                out[f.path] = Parsed(error=relocate(cached.error, f.path)) if cached.error else cached
                continue
            raw = data.get(f.path)
            if raw is None:  # evicted from the blob cache since read_tree: read it now (we are in a worker thread)
                raw = cache.read_blobs_sync([f.blob])[f.blob]
            p = parse_file(raw, f.path, self.limits)
            self.parse_count += 1
            self._blobs.put(("k8s", f.blob), p)
            out[f.path] = p
        return out

    # --- aws ---------------------------------------------------------------------------------------------

    def _aws(self, cache: RepositoryCache, snap: TreeSnapshot, ctx: Context
             ) -> tuple[tuple[AwsDeclaration, ...], tuple[DesiredStateError, ...], tuple[str, ...]]:
        problems = list(snap.problems)
        warnings: list[str] = []
        decls: list[AwsDeclaration] = []
        for f in snap.files:
            if not is_template_path(f.path):
                continue
            cached = self._blobs.get_fresh(("cfn", f.blob))
            docs: list[Document] | DesiredStateError
            if cached is None or isinstance(cached, Parsed):
                raw = f.data if f.data is not None else cache.read_blobs_sync([f.blob])[f.blob]
                try:
                    docs = parse_template_documents(raw, f.path, self.limits)
                except DesiredStateError as e:
                    docs = e
                self.parse_count += 1
                self._blobs.put(("cfn", f.blob), docs)
            else:
                docs = cached
            if isinstance(docs, DesiredStateError):
                problems.append(relocate(docs, f.path))
                continue
            r = declarations_from_template(docs, f.path, ctx)
            decls.extend(r.declarations)
            problems.extend(r.errors)
            warnings.extend(r.warnings)
        problems.extend(check_duplicates(decls))
        return tuple(decls), tuple(problems), tuple(warnings)


def _missing_dir(path: str, commit: str, key: str) -> DesiredStateError:
    return DesiredStateError(f"directory does not exist at commit {commit[:12]} (set by {key})", file=path or "/")
