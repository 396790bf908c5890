"""The shared pools of the one-shot CLI and the daemon: repository caches and targets.

- ``Sources``: one repository cache per repository (fetched once for all its environments),
  the desired-state loader, and a limiter shared by every git worker thread.
- ``TargetPool``: one target per cluster and per AWS account, shared by the environments that
  use it (so informer caches and verdict caches are shared too), each with a limiter bounding
  the passes running against it at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .. import metrics
from ..config import Config, EnvironmentSettings, RepositorySettings
from ..errors import DriftdError, SourceError
from ..log import get_logger
from ..model import ClusterInfo, TargetKind
from ..sources.git import FetchResult, RepositoryCache
from ..sources.loader import ClusterInfoSource, DesiredStateLoader, LoadResult, yaml_limits
from .protocols import ClusterInfoTarget, Target

log = get_logger("driftd.engine")

if TYPE_CHECKING:  # no runtime import: a build may lack a target, and each costs its client library
    from ..targets.aws.target import AwsTarget
    from ..targets.kubernetes.target import KubernetesTarget

    def _targets_conform(k: KubernetesTarget, a: AwsTarget) -> tuple[Target, Target, ClusterInfoTarget]:
        """mypy proves both implement the whole Target protocol (watch and check_objects included): the
        engine calls them without probing (no getattr/hasattr)."""
        return k, a, k


class Sources:
    """Repository caches and the loader. ``update`` keeps the caches of repositories that stay."""

    def __init__(self, config: Config) -> None:
        self.limiter = anyio.CapacityLimiter(max(1, config.daemon.git_concurrency))
        self.caches: dict[str, RepositoryCache] = {}
        self.loader = DesiredStateLoader(self.caches, limits=yaml_limits(config))
        self.update(config)

    def update(self, config: Config) -> None:
        self.limiter.total_tokens = max(1, config.daemon.git_concurrency)
        branches: dict[str, set[str]] = {}
        for env in config.environments:
            branches.setdefault(env.repository, set()).add(env.branch)
        for name in list(self.caches):
            if name not in config.repositories or self.caches[name].settings != config.repositories[name] \
                    or self.caches[name].branches != frozenset(branches.get(name, ())):
                del self.caches[name]
        for name, settings in config.repositories.items():
            if name not in self.caches and name in branches:
                self.caches[name] = self._cache(settings, config, branches[name])

    def _cache(self, settings: RepositorySettings, config: Config, branches: Iterable[str]) -> RepositoryCache:
        return RepositoryCache(settings, config.daemon.state_dir, limiter=self.limiter, branches=branches)

    async def fetch(self, repository: str) -> FetchResult:
        cache = self.caches.get(repository)
        if cache is None:
            raise SourceError("no such repository in the config", subject=repository)
        with anyio.fail_after(cache.settings.timeout + 5):
            result = await cache.fetch()
        metrics.source_last_success.labels(repository).set(result.fetched_at)
        return result

    async def load(self, env: EnvironmentSettings, account_id: str = "", region: str = "",
                   cluster: ClusterInfoSource | None = None) -> LoadResult:
        return await self.loader.load(env, account_id=account_id, region=region, cluster=cluster)


@dataclass
class PooledTarget:
    target: Target
    limiter: anyio.CapacityLimiter
    settings: Any


@dataclass
class TargetPool:
    """Targets by (kind, cluster or account name). Built lazily, closed by ``aclose``."""

    config: Config
    targets: dict[tuple[TargetKind, str], PooledTarget] = field(default_factory=dict)
    _clusters: dict[str, ClusterInfoTarget] = field(default_factory=dict)  # the Kubernetes targets, as Helm asks them

    def names(self, env: EnvironmentSettings) -> list[tuple[TargetKind, str]]:
        out = []
        if env.kubernetes is not None:
            out.append((TargetKind.KUBERNETES, env.kubernetes.cluster))
        if env.aws is not None:
            out.append((TargetKind.AWS, env.aws.account))
        return out

    def cluster_info(self, env: EnvironmentSettings) -> ClusterInfoSource | None:
        """What Helm renders against: the environment's cluster, asked only when a release needs it."""
        if env.kubernetes is None:
            return None
        name = env.kubernetes.cluster

        async def info() -> ClusterInfo:
            self.get(TargetKind.KUBERNETES, name)
            return await self._clusters[name].cluster_info()

        return info

    def withdraw(self, env: EnvironmentSettings) -> None:
        """``env`` failed to load its desired state: its cluster's other environments must not take its
        last known claims for complete (an object moved into it would look orphaned)."""
        if env.kubernetes is not None and (kube := self._clusters.get(env.kubernetes.cluster)) is not None:
            kube.withdraw(env.name)

    def get(self, kind: TargetKind, name: str) -> PooledTarget:
        key = (kind, name)
        if key not in self.targets:
            self.targets[key] = self._build(kind, name)
        return self.targets[key]

    def _build(self, kind: TargetKind, name: str) -> PooledTarget:
        if kind is TargetKind.KUBERNETES:
            from ..targets.kubernetes.target import KubernetesTarget

            cs = self.config.clusters[name]
            # Ownership before prune: the environments on this cluster, as the current config says.
            kube = KubernetesTarget(cs, peers=lambda: [e.name for e in self.config.environments
                                                       if e.kubernetes is not None and e.kubernetes.cluster == name])
            self._clusters[name] = kube
            return PooledTarget(kube, anyio.CapacityLimiter(max(1, cs.concurrency)), cs)
        acct = self.config.aws_accounts[name]
        try:
            # Looked up by name: the AWS target may be absent from a build (or still being written).
            target: Target = getattr(importlib.import_module("driftd.targets.aws"), "AwsTarget")(acct)  # noqa: B009
        except (ImportError, AttributeError) as e:
            raise DriftdError("the AWS target is not available in this build", subject=f"aws_accounts {name}") from e
        return PooledTarget(target, anyio.CapacityLimiter(max(1, acct.concurrency)), acct)

    async def update(self, config: Config) -> None:
        """A reloaded config: close the targets whose settings changed or that nobody uses now."""
        used = {k for env in config.environments for k in self.names(env)}
        self.config = config
        for key in list(self.targets):
            kind, name = key
            new = config.clusters.get(name) if kind is TargetKind.KUBERNETES else config.aws_accounts.get(name)
            if key not in used or new != self.targets[key].settings:
                pt = self.targets.pop(key)
                await _close(pt.target)

    async def aclose(self) -> None:
        for pt in self.targets.values():
            await _close(pt.target)
        self.targets.clear()


async def _close(target: Target) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await target.aclose()
        except Exception:
            log.exception("target.close_failed")


def aws_context(config: Config, env: EnvironmentSettings) -> Mapping[str, str]:
    if env.aws is None:
        return {}
    acct = config.aws_accounts.get(env.aws.account)
    return {"region": acct.region} if acct else {}
