"""``driftd validate``: the config (already loaded) and every environment's desired state.

Each repository is fetched once (into a private temporary cache, so a running
daemon's cache is never touched), then every environment is parsed and *all*
problems are reported, each with its file, line and column.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio

from ..config import Config
from ..errors import SourceError
from ..sources.git import RepositoryCache
from ..sources.loader import DesiredStateLoader, yaml_limits


def validate(config: Config, *, config_only: bool = False, warn: Callable[[str], None] | None = None) -> list[str]:
    """Every problem found, each naming its file and location. Empty means valid.

    The config itself was validated by ``load_config``; ``config_only`` stops there.
    Non-fatal findings (unknown CloudFormation types ...) go to ``warn``.
    """
    if config_only:
        return []
    return anyio.run(_validate, config, warn or (lambda _: None))


def _supported_aws_types() -> frozenset[str] | None:
    try:
        from ..targets.aws import registry
    except ImportError:  # the AWS target is optional at validation time
        return None
    try:
        return frozenset(registry.supported_types())
    except Exception:  # a broken adapter must not hide the desired-state report
        return None


async def _validate(config: Config, warn: Callable[[str], None]) -> list[str]:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="driftd-validate-") as tmp:
        limiter = anyio.CapacityLimiter(config.daemon.git_concurrency)
        caches: dict[str, RepositoryCache] = {}
        for name, repo in config.repositories.items():
            branches = {e.branch for e in config.environments if e.repository == name}
            if branches:
                caches[name] = RepositoryCache(repo, Path(tmp), limiter=limiter, branches=branches)

        async def fetch(cache: RepositoryCache) -> None:
            try:
                await cache.fetch()
            except SourceError as e:
                problems.append(str(e))

        async with anyio.create_task_group() as tg:
            for cache in caches.values():
                tg.start_soon(fetch, cache)
        loader = DesiredStateLoader(caches, supported_aws_types=_supported_aws_types(), limits=yaml_limits(config))
        for env in config.environments:
            env_cache = caches.get(env.repository)
            if env_cache is None or env_cache.last_error is not None:
                continue  # already reported once for the repository
            region = config.aws_accounts[env.aws.account].region if env.aws and \
                env.aws.account in config.aws_accounts else ""
            r = await loader.load(env, region=region)
            prefix = f"environment {env.name} ({env.repository}@{env.branch}"
            prefix += f" {r.revision[:12]})" if r.revision else ")"
            if r.problems:
                problems.extend(f"{prefix}: {p}" for p in r.problems)
            elif r.error:
                problems.append(f"{prefix}: {r.error}")
            if r.state:
                for w in r.state.warnings:
                    warn(f"{prefix}: {w}")
    return problems
