"""An environment's desired state at its branch's current commit, parsed as little as possible.

Four caches make steady state (and a cold start over many branches) cheap:

1. per environment: the commit, the tree ids of its kubernetes and aws paths and
   the resulting state. Same commit -> the same state, no work at all. New commit
   but the same tree ids -> the same objects under the new revision, no parsing;
2. per (tree id, settings): a tree parsed for one environment serves every other
   environment whose branch holds the same tree;
3. per blob: the documents of a file, so a commit that changes one file of
   2,000 re-parses one file. Bounded by the number of entries and by the YAML
   nodes they hold (aliases expanded), so memory stays bounded whatever the files;
4. per directory of a plain tree (no kustomize, Helm or SOPS): its objects, errors and
   budget totals by tree id (:mod:`.subtrees`), so a branch that differs from another in
   one file costs the walk of that file's directories. Bounded like the blob cache.

Every tree load carries a :class:`~.yamlsafe.Budget`: the nodes, bytes and documents
of its files (cached or not, kustomize output included) count against the tree
limits, and a tree over them is refused at the file where it ran out.

Failure semantics: a fetch that failed, a branch that disappeared, a path that
does not exist, or any file that does not parse gives a :class:`LoadResult`
with ``error`` set and ``state`` None, never a partial state. The last good
revision is kept in the result. Other environments of the same repository load
independently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ..config import Config, EnvironmentSettings
from ..errors import DesiredStateError, DriftdError, SourceError
from ..log import get_logger
from ..model import AwsDeclaration, ClusterInfo, DesiredObject, DesiredState
from .declarations import (
    Context,
    check_duplicates,
    declarations_from_template,
    is_template_path,
    parse_template_documents,
)
from .git import RepositoryCache, TreeFile, TreeSnapshot
from .helm import FALLBACK_CLUSTER, HelmRelease, HelmRenderer, chart_dirs, is_release_file, parse_releases
from .kustomize import Kustomizer
from .manifests import (
    KUSTOMIZATION_FILES,
    ObjectMemo,
    Parsed,
    Rendering,
    is_manifest_path,
    kustomizations,
    manifests_from_files,
    parse_file,
    under_any,
)
from .signatures import CommitSignature, SignatureVerifier, read_trusted_keys
from .sops import SopsDecryptor, is_encrypted
from .subtrees import NotPlain, PlainTreeLoader, Refusal, Segment, budget_state
from .yamlsafe import DEFAULT_LIMITS, Budget, BudgetExceeded, Limits, relocate

log = get_logger(__name__)

ClusterInfoSource = Callable[[], Awaitable[ClusterInfo]]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def yaml_limits(config: Config) -> Limits:
    """The YAML bounds of every environment's tree, with what the operator may raise taken from config."""
    return Limits(max_tree_nodes=config.daemon.max_tree_nodes)


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
    deps: tuple[tuple[str, str | None], ...] = ()  # (path, tree id) read from outside the kubernetes path


class _Lru(OrderedDict[K, V]):
    """Least recently used first out, bounded by entries and, when ``max_cost`` is set, by their summed cost."""

    def __init__(self, size: int, max_cost: int | None = None) -> None:
        super().__init__()
        self.size = size
        self.max_cost = max_cost
        self.cost = 0
        self._costs: dict[K, int] = {}

    def get_fresh(self, key: K) -> V | None:
        # one lookup, and no window between a membership test and the move for another worker thread's
        # eviction to fall into (loads of several environments run in worker threads at once)
        try:
            self.move_to_end(key)
            return self[key]
        except KeyError:
            return None

    def put(self, key: K, value: V, cost: int = 0) -> None:
        if self.max_cost is not None and cost > self.max_cost:
            return  # larger than the whole cache: keeping it would only evict everything else
        self.cost += cost - self._costs.get(key, 0)
        self._costs[key] = cost
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size or (self.max_cost is not None and self.cost > self.max_cost):
            old, _ = self.popitem(last=False)
            self.cost -= self._costs.pop(old, 0)


class DesiredStateLoader:
    """Loads environments' desired state from their repositories' caches (which the caller fetches)."""

    def __init__(self, repositories: Mapping[str, RepositoryCache], *, kustomizer: Kustomizer | None = None,
                 helm: HelmRenderer | None = None, sops: SopsDecryptor | None = None,
                 verifier: SignatureVerifier | None = None,
                 supported_aws_types: frozenset[str] | None = None, limits: Limits = DEFAULT_LIMITS,
                 blob_cache_size: int = 200_000, blob_cache_nodes: int = 2_000_000, tree_cache_size: int = 512,
                 reuse_directories: bool = True) -> None:
        self.repositories = repositories
        self.kustomizer = kustomizer or Kustomizer()
        self.helm = helm or HelmRenderer()
        self.sops = sops or SopsDecryptor()
        self.verifier = verifier or SignatureVerifier()
        self.supported_aws_types = supported_aws_types
        self.limits = limits
        self._envs: dict[str, _EnvEntry] = {}
        self._last_good: dict[str, str] = {}
        # cost: YAML nodes (aliases expanded) of the cached documents, ~100-200 bytes of Python objects each
        self._blobs: _Lru[tuple[str, str], Parsed] = _Lru(blob_cache_size, blob_cache_nodes)
        self._trees: _Lru[tuple[Any, ...], tuple[tuple[Any, ...], tuple[DesiredStateError, ...], tuple[str, ...]]] = \
            _Lru(tree_cache_size)
        # objects built per cached parse result, shared by environments reading the same files
        self._objects = ObjectMemo()
        # plain trees (no kustomize/Helm/SOPS) assembled from their directories' results, kept by tree id:
        # branches that share most directories share their work (see subtrees.py). Bounded like the blob cache.
        self._segments: _Lru[tuple[Any, ...], Segment] = _Lru(blob_cache_size, blob_cache_nodes)
        self._plain = PlainTreeLoader(self._segments, self._blobs, self._objects, limits) if reuse_directories \
            else None
        self.parse_count = 0  # files parsed since start (tests and benchmarks read it)

    @property
    def directories_reused(self) -> int:
        """Directories of plain trees whose results were reused from another load (tests, benchmarks)."""
        return self._plain.reused if self._plain is not None else 0

    def last_good_revision(self, env: str) -> str | None:
        return self._last_good.get(env)

    async def load(self, env: EnvironmentSettings, *, account_id: str = "", region: str = "",
                   cluster: ClusterInfoSource | None = None) -> LoadResult:
        """The desired state of ``env`` at its branch's commit as of the repository's last fetch.

        ``cluster`` tells Helm the cluster's version and API versions; it is called only when the
        environment declares Helm releases (without it, :data:`helm.FALLBACK_CLUSTER`)."""
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
            if env.signatures is not None:
                untrusted = await self._untrusted(cache, env, commit)
                if untrusted is not None:
                    # Stay on the last verified revision: nothing of this one is read, let alone acted on.
                    log.warning("desired.untrusted_revision", env=env.name, revision=commit, reason=untrusted)
                    return LoadResult(env.name, commit, error=f"untrusted revision {commit}: {untrusted}",
                                      last_good_revision=last_good)
            result = await self._load(cache, env, commit, account_id, region, cluster)
        except SourceError as e:
            return LoadResult(env.name, commit, error=str(e), last_good_revision=last_good)
        if result.ok:
            self._last_good[env.name] = commit
            return replace(result, last_good_revision=commit)
        return replace(result, last_good_revision=last_good)

    async def _untrusted(self, cache: RepositoryCache, env: EnvironmentSettings, commit: str) -> str | None:
        """None when ``commit`` is signed by one of the environment's trusted keys, else why not."""
        assert env.signatures is not None
        keys = await anyio.to_thread.run_sync(read_trusted_keys, env.signatures.trusted_key_files)
        payload, signature = await cache.commit_signature(commit)
        return await self.verifier.verify(commit, CommitSignature(payload, signature), keys)

    async def load_revision(self, env: EnvironmentSettings, commit: str, *, account_id: str = "",
                            region: str = "", cluster: ClusterInfoSource | None = None) -> LoadResult:
        """The desired state of ``env`` at another ``commit`` of its repository (already in the cache), for a
        preview (``driftd diff --revision``): nothing is acted on, so an unsigned commit is read too (a pull
        request's usually is), and the environment's last good revision is left alone."""
        cache = self.repositories.get(env.repository)
        if cache is None:
            return LoadResult(env.name, None, error=f"no repository named {env.repository!r}")
        try:
            return await self._load(cache, env, commit, account_id, region, cluster)
        except SourceError as e:
            return LoadResult(env.name, commit, error=str(e))

    async def _load(self, cache: RepositoryCache, env: EnvironmentSettings, commit: str,
                    account_id: str, region: str, cluster: ClusterInfoSource | None) -> LoadResult:
        kube, aws = env.kubernetes, env.aws
        settings_key = (
            cache.url,
            (kube.path, kube.namespace, env.sops_age_key_file, kube.allow_remote_bases) if kube else None,
            (aws.path, tuple(sorted(aws.parameters.items())), account_id, region, env.name) if aws else None,
            self.supported_aws_types,
        )
        prev = self._envs.get(env.name)
        if prev and prev.commit == commit and prev.settings_key == settings_key:
            return LoadResult(env.name, commit, state=prev.state)
        kube_tree = await cache.tree_id(commit, kube.path) if kube else None
        aws_tree = await cache.tree_id(commit, aws.path) if aws else None
        if prev and prev.settings_key == settings_key and (prev.kube_tree, prev.aws_tree) == (kube_tree, aws_tree) \
                and all([await cache.tree_id(commit, p) == t for p, t in prev.deps]):
            state = replace(prev.state, revision=commit)
            self._envs[env.name] = replace(prev, commit=commit, state=state)
            return LoadResult(env.name, commit, state=state)

        problems: list[DesiredStateError] = []
        warnings: list[str] = []
        objects: tuple[DesiredObject, ...] = ()
        decls: tuple[AwsDeclaration, ...] = ()
        deps: tuple[tuple[str, str | None], ...] = ()
        parsed = False
        if kube:
            if kube_tree is None:
                problems.append(_missing_dir(kube.path, commit, "environments.kubernetes.path"))
            else:
                kkey: tuple[Any, ...] = ("k8s", kube_tree, kube.namespace, kube.allow_remote_bases)
                hit = self._trees.get_fresh(kkey)
                refusal: Refusal | None = None
                if hit is None and self._plain is not None:
                    plain = await anyio.to_thread.run_sync(self._plain_tree, cache, kube_tree, kube.path,
                                                           kube.namespace)
                    if isinstance(plain, tuple):
                        hit = plain
                        self._trees.put(kkey, hit)
                        parsed = True
                    else:
                        refusal = plain
                if hit is None:
                    snap = await cache.read_tree(commit, kube.path, known=lambda b: ("k8s", b) in self._blobs)
                    hit, deps, dynamic = await self._kubernetes(cache, snap, kube.namespace, cluster,
                                                                env.sops_age_key_file, kube.allow_remote_bases,
                                                                refusal)
                    # Not shared by tree: a Helm rendering also depends on the cluster and on charts outside
                    # the tree, decrypted objects on the environment's key (they stay in this env's state).
                    if not dynamic:
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
        self._envs[env.name] = _EnvEntry(commit, settings_key, kube_tree, aws_tree, state, deps)
        return LoadResult(env.name, commit, state=state, parsed=parsed)

    # --- kubernetes ------------------------------------------------------------------------------------

    async def _kubernetes(self, cache: RepositoryCache, snap: TreeSnapshot, namespace: str,
                          cluster: ClusterInfoSource | None, age_key_file: Path | None, allow_remote: bool = False,
                          refusal: Refusal | None = None
                          ) -> tuple[tuple[tuple[DesiredObject, ...], tuple[DesiredStateError, ...], tuple[str, ...]],
                                     tuple[tuple[str, str | None], ...], bool]:
        """(objects, problems, ()), the trees outside the path it read (Helm charts), and whether the
        result depends on more than the tree (Helm releases, SOPS files)."""
        problems = list(snap.problems)
        kfiles = [f for f in snap.files if f.path.rpartition("/")[2] in KUSTOMIZATION_FILES]
        rfiles = [f for f in snap.files if is_release_file(f.path)]
        data: dict[str, bytes] = {f.path: f.data for f in snap.files if f.data is not None}
        cdirs = chart_dirs([f.path for f in snap.files]) if rfiles else []
        if kfiles or rfiles:
            # kustomize needs every file of its directories as bytes, parsed-and-cached or not; Helm its
            # release files and charts (the blob cache only holds parsed manifests)
            kdirs = [f.path.rpartition("/")[0] for f in kfiles] + cdirs
            await self._read_missing(cache, snap, data, lambda p: under_any(p, kdirs) or is_release_file(p))
        skip_paths: set[str] = {f.path for f in rfiles}
        releases: list[HelmRelease] = []
        for f in rfiles:
            rels, rel_errors = parse_releases(data[f.path], f.path, self.limits)
            releases.extend(rels)
            problems.extend(rel_errors)
            skip_paths.update(v for r in rels for v in r.values_files)
        if releases:
            await self._read_missing(cache, snap, data, lambda p: p in skip_paths)

        # Every kustomization's directory, rendered or only referenced (an overlay's base): its files are
        # kustomize's input, not manifests of their own.
        kustomize_dirs = [f.path.rpartition("/")[0] for f in kfiles]

        def skip(path: str) -> bool:
            return path in skip_paths or under_any(path, cdirs) or under_any(path, kustomize_dirs)

        budget = Budget(self.limits)
        files = await anyio.to_thread.run_sync(self._parse_manifests, cache, snap.files, data, skip, budget, refusal)
        encrypted = [path for path, p in files.items() if p.error is None and is_encrypted(p.documents)]
        for path in sorted(p for p in data if under_any(p, kustomize_dirs) and is_manifest_path(p)
                           and b"sops:" in data[p] and is_encrypted(parse_file(data[p], p, self.limits).documents)):
            # kubectl kustomize reads files from disk: decrypting this one for it would write its cleartext there,
            # and rendering it as is would apply ENC[...] strings.
            problems.append(DesiredStateError(
                "this file is encrypted with SOPS inside a kustomization directory, which driftd does not decrypt "
                "(kustomize would need its cleartext on disk); keep encrypted manifests outside kustomization "
                "directories", file=path))
        if encrypted:
            await self._decrypt(cache, snap, files, data, encrypted, age_key_file)
        rendered: dict[str, Parsed] = {}
        if kfiles:
            todo = kustomizations([f.path for f in snap.files], data)
            to_render = [k for k, err in todo.items() if err is None]
            for k, err in todo.items():
                if err is not None:
                    rendered[k] = Parsed(error=err)
            outputs = await self.kustomizer.render(data, to_render, tree=[f.path for f in snap.files], root=snap.path,
                                                   allow_remote=allow_remote)
            for k, out in outputs.items():
                rendered[k] = Parsed(error=out) if isinstance(out, DesiredStateError) else \
                    parse_file(out, k, self.limits, budget)
                self.parse_count += 1
        renderings, deps = await self._helm(cache, snap, releases, data, namespace, cluster) if releases else ([], ())
        objects, errs = manifests_from_files(files, rendered, namespace=namespace, renderings=renderings, skip=skip,
                                             memo=self._objects)
        problems.extend(errs)
        return (objects, tuple(problems), ()), deps, bool(rfiles or encrypted)

    def _plain_tree(self, cache: RepositoryCache, tree: str, path: str, namespace: str
                    ) -> tuple[tuple[DesiredObject, ...], tuple[DesiredStateError, ...], tuple[str, ...]] | \
            Refusal | None:
        """The tree's (objects, problems, ()) from its directories' results; when it is not plain, None or the
        file its budget refused (the general path then reads the tree; for a plain tree it gives the same
        result, only slower)."""
        assert self._plain is not None
        before = self._plain.parse_count
        try:
            with cache.reader() as reader:
                objects, errors = self._plain.load(reader, tree, path, namespace, cache.url, cache.limits)
        except NotPlain as e:
            return e.refusal
        finally:
            self.parse_count += self._plain.parse_count - before
        return objects, errors, ()

    async def _decrypt(self, cache: RepositoryCache, snap: TreeSnapshot, files: dict[str, Parsed],
                       data: dict[str, bytes], encrypted: list[str], key_file: Path | None) -> None:
        """Replace each SOPS file's documents by its cleartext's (marked sensitive), or by its error."""
        blobs = {f.path: f.blob for f in snap.files}
        await self._read_missing(cache, snap, data, lambda p: p in encrypted)
        for path in encrypted:
            out = await self.sops.decrypt(data[path], file=path, blob=blobs[path], documents=files[path].documents,
                                          key_file=key_file)
            if isinstance(out, DesiredStateError):
                files[path] = Parsed(error=out)
                continue
            p = parse_file(out, path, self.limits)
            files[path] = Parsed(error=p.error) if p.error else replace(p, sensitive=True)

    @staticmethod
    async def _read_missing(cache: RepositoryCache, snap: TreeSnapshot, data: dict[str, bytes],
                            wanted: Callable[[str], bool]) -> None:
        need = {f.blob: f.path for f in snap.files if f.path not in data and wanted(f.path)}
        if need:
            blobs = await cache.read_blobs(need)
            for blob, path in need.items():
                data[path] = blobs[blob]

    async def _helm(self, cache: RepositoryCache, snap: TreeSnapshot, releases: list[HelmRelease],
                    data: Mapping[str, bytes], namespace: str, cluster: ClusterInfoSource | None
                    ) -> tuple[list[Rendering], tuple[tuple[str, str | None], ...]]:
        """Each release rendered (or its error), and the chart trees read from outside the path."""
        info = FALLBACK_CLUSTER
        if cluster is not None:
            try:
                info = await cluster()
            except DriftdError as e:  # no render against a guessed cluster: the state would be wrong
                err = DesiredStateError(f"cannot render Helm releases: the cluster's version is unknown: {e}",
                                        file=releases[0].file, line=releases[0].line)
                return [Rendering(r.file, r.where(), r.namespace or namespace, Parsed(error=err))
                        for r in releases], ()
        out: list[Rendering] = []
        deps: list[tuple[str, str | None]] = []
        inside = snap.path
        for r in releases:
            ns = r.namespace or namespace
            source = f"{r.file}[{r.name}]"

            def failed(msg: str, r: HelmRelease = r, ns: str = ns, source: str = source) -> None:
                out.append(Rendering(r.file, source, ns, Parsed(error=DesiredStateError(
                    f"release {r.name}: {msg}", file=r.file, line=r.line))))

            missing = [v for v in r.values_files if v not in data]
            if missing:
                failed(f"values file {missing[0]} does not exist (values files must be below "
                       f"{inside or '/'}, the environment's path)")
                continue
            sealed = [v for v in r.values_files
                      if b"sops:" in data[v] and is_encrypted(parse_file(data[v], v).documents)]
            if sealed:
                # helm reads values from files: decrypting one would put its cleartext on disk. Refuse, loudly,
                # rather than render ENC[...] strings as values.
                failed(f"values file {sealed[0]} is encrypted with SOPS, which is not supported for Helm values "
                       "(keep secrets in SOPS-encrypted manifests next to the release file)")
                continue
            chart_files: Callable[[], Awaitable[Mapping[str, bytes]]] | None = None
            if r.local:
                digest = await cache.tree_id(snap.commit, r.chart)
                if not (inside == "" or r.chart == inside or r.chart.startswith(inside + "/")):
                    deps.append((r.chart, digest))
                if digest is None:
                    failed(f"chart directory {r.chart} does not exist at commit {snap.commit[:12]}")
                    continue
                chart_files = self._chart_reader(cache, snap, r, data)
            else:
                digest = f"{r.repository or ''}|{r.chart}|{r.version}"
            rendered = await self.helm.render(r, namespace=ns, chart_digest=digest, chart_files=chart_files,
                                              values_data=[data[v] for v in r.values_files], cluster=info)
            parsed = Parsed(error=rendered) if isinstance(rendered, DesiredStateError) else \
                parse_file(rendered, r.file, self.limits)
            if parsed.error is not None and not isinstance(rendered, DesiredStateError):
                parsed = Parsed(error=DesiredStateError(f"release {r.name}: helm's output does not parse: "
                                                        f"{parsed.error.message}", file=r.file, line=r.line))
            self.parse_count += 1
            out.append(Rendering(r.file, source, ns, parsed))
        return out, tuple(deps)

    @staticmethod
    def _chart_reader(cache: RepositoryCache, snap: TreeSnapshot, r: HelmRelease, data: Mapping[str, bytes]
                      ) -> Callable[[], Awaitable[Mapping[str, bytes]]]:
        async def read() -> Mapping[str, bytes]:
            prefix = r.chart + "/" if r.chart else ""
            if snap.path == "" or r.chart == snap.path or r.chart.startswith(snap.path + "/"):
                return {p[len(prefix):]: b for p, b in data.items() if p.startswith(prefix)}
            chart = await cache.read_tree(snap.commit, r.chart)
            if chart.problems:
                raise chart.problems[0]
            return {f.path[len(prefix):]: f.data for f in chart.files if f.data is not None}
        return read

    def _parse_manifests(self, cache: RepositoryCache, entries: tuple[TreeFile, ...],
                         data: Mapping[str, bytes], skip: Callable[[str], bool], budget: Budget,
                         refusal: Refusal | None = None) -> dict[str, Parsed]:
        out: dict[str, Parsed] = {}
        for f in entries:
            if not is_manifest_path(f.path) or skip(f.path):
                continue
            cached = self._blobs.get_fresh(("k8s", f.blob))
            if isinstance(cached, Parsed):
                if cached.error:
                    out[f.path] = Parsed(error=relocate(cached.error, f.path))
                    continue
                try:
                    budget.charge_parsed(cached.documents, cached.size, f.path)
                except BudgetExceeded as e:
                    out[f.path] = Parsed(error=e)
                    break  # the tree is refused; parsing the rest would only spend what the budget protects
                out[f.path] = cached
                continue
            raw = data.get(f.path)
            if raw is None:  # evicted from the blob cache since read_tree: read it now (we are in a worker thread)
                raw = cache.read_blobs_sync([f.blob])[f.blob]
            if refusal is not None and (refusal.path, refusal.blob, refusal.before) == \
                    (f.path, f.blob, budget_state(budget)):
                p = refusal.parsed  # parsed by the plain-tree walk, with the same budget spent: the same refusal
                budget.nodes, budget.bytes, budget.documents = refusal.after
            else:
                p = parse_file(raw, f.path, self.limits, budget)
                self.parse_count += 1
            out[f.path] = p
            if isinstance(p.error, BudgetExceeded):
                break  # not cached: whether a file fits depends on the rest of its tree
            self._blobs.put(("k8s", f.blob), p, 1 + p.nodes)
        return out

    # --- aws ---------------------------------------------------------------------------------------------

    def _aws(self, cache: RepositoryCache, snap: TreeSnapshot, ctx: Context
             ) -> tuple[tuple[AwsDeclaration, ...], tuple[DesiredStateError, ...], tuple[str, ...]]:
        problems = list(snap.problems)
        warnings: list[str] = []
        decls: list[AwsDeclaration] = []
        budget = Budget(self.limits)
        for f in snap.files:
            if not is_template_path(f.path):
                continue
            cached = self._blobs.get_fresh(("cfn", f.blob))
            if cached is None:
                raw = f.data if f.data is not None else cache.read_blobs_sync([f.blob])[f.blob]
                try:
                    cached = Parsed(tuple(parse_template_documents(raw, f.path, self.limits, budget)), size=len(raw))
                except BudgetExceeded as e:
                    problems.append(e)  # not cached: whether a file fits depends on the rest of its tree
                    break
                except DesiredStateError as e:
                    e.__traceback__ = None  # cached: the traceback would keep the parser and nodes alive
                    cached = Parsed(error=e, size=len(raw))
                self.parse_count += 1
                self._blobs.put(("cfn", f.blob), cached, 1 + cached.nodes)
            elif cached.error is None:
                try:
                    budget.charge_parsed(cached.documents, cached.size, f.path)
                except BudgetExceeded as e:
                    problems.append(e)
                    break
            if cached.error is not None:
                problems.append(relocate(cached.error, f.path))
                continue
            docs = list(cached.documents)
            r = declarations_from_template(docs, f.path, ctx)
            decls.extend(r.declarations)
            problems.extend(r.errors)
            warnings.extend(r.warnings)
        problems.extend(check_duplicates(decls))
        return tuple(decls), tuple(problems), tuple(warnings)


def _missing_dir(path: str, commit: str, key: str) -> DesiredStateError:
    return DesiredStateError(f"directory does not exist at commit {commit[:12]} (set by {key})", file=path or "/")
