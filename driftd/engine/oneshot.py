"""``driftd check`` and ``driftd sync``: one pass, then exit.

``check`` is read-only: it changes nothing live and writes nothing to the state store (it may
run as a CI user without access to ``state_dir``), but reads the inventory when it can, to find
orphans. ``sync`` reverts every reportable drift regardless of the environment's mode, windows
and brakes (an operator asked), honours per-object ``observe``/``disabled`` and the empty-state
guard, prunes where the environment allows it, and records what it did in the audit trail.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TextIO

import anyio

from ..config import Config, EnvironmentSettings
from ..errors import DriftdError
from ..log import get_logger
from ..model import Change, EnvironmentReport, PassKind, Report, ResourceKey, Status, TargetKind
from ..state import StateError, StateStore, db_path
from .desired import refresh
from .pools import Sources, TargetPool
from .reconciler import EnvRuntime, Reconciler, utcnow

log = get_logger("driftd.engine")


class Progress:
    """One status line on stderr while a long CLI pass runs; silent when stderr is not a terminal."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = self.out.isatty()
        self.total = total
        self.done = 0

    def step(self, what: str) -> None:
        if self.enabled:
            self.out.write(f"\r\033[K[{self.done}/{self.total}] {what}")
            self.out.flush()

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.enabled:
            self.out.write("\r\033[K")
            self.out.flush()


@asynccontextmanager
async def open_store(state_dir: Path, *, write: bool) -> AsyncIterator[StateStore | None]:
    """The state store, or None where it cannot be opened (logged: a read-only pass then only loses orphan
    detection). ``write=False`` opens it read-only and only if it exists."""
    if not write and not db_path(state_dir).exists():
        yield None
        return
    try:
        # check reads the inventory only: read-only, so it works where it may not write (and never
        # migrates the daemon's database under it).
        cm = StateStore.open(state_dir, readonly=not write)
        store = await cm.__aenter__()
    except (StateError, OSError) as e:
        log.warning("state.unavailable", path=str(state_dir), error=str(e),
                    hint="nothing is recorded" if write else "orphans cannot be detected")
        yield None
        return
    try:
        yield store
    finally:
        await cm.__aexit__(None, None, None)


class _Fetches:
    """Each repository fetched once for all its environments (a second concurrent fetch of the same
    cache would be refused as "still running"); a failure stays in the cache's ``last_error``."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.locks: dict[str, anyio.Lock] = {}
        self.done: set[str] = set()

    async def fetch(self, repository: str) -> None:
        lock = self.locks.setdefault(repository, anyio.Lock())
        async with lock:
            if repository in self.done:
                return
            try:
                await self.sources.fetch(repository)
            except (DriftdError, TimeoutError) as e:
                log.warning("source.fetch_failed", repository=repository, error=str(e))
            self.done.add(repository)


async def _one_env(config: Config, env: EnvironmentSettings, sources: Sources, pool: TargetPool,
                   reconciler: Reconciler, target: TargetKind | None, pass_kind: PassKind,
                   dry_run: bool | None, progress: Progress, fetches: _Fetches) -> EnvironmentReport:
    rt = EnvRuntime(env)
    progress.step(f"{env.name}: fetching {env.repository}")
    await fetches.fetch(env.repository)
    if not (await refresh(rt, sources, config, cluster=pool.cluster_info(env))).loaded:
        return await reconciler.publish(rt)
    for kind, name in pool.names(env):
        if target is not None and kind is not target:
            continue
        progress.step(f"{env.name}: {pass_kind} {kind} {name}")
        try:
            pt = pool.get(kind, name)
            async with pt.limiter:
                await reconciler.pass_target(rt, pt.target, pass_kind=pass_kind, dry_run=dry_run)
        except DriftdError as e:
            rt.view(kind).error = f"{kind}: {e}"
        except Exception as e:  # one broken target never stops the others
            log.exception("check.crashed", env=env.name, target=str(kind))
            rt.view(kind).error = f"{kind}: internal error: {type(e).__name__}: {e}"
    return await reconciler.publish(rt)


def writable(directory: Path) -> bool:
    """Whether this process may create files in ``directory`` (created if missing and allowed)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


async def _run(config: Config, envs: Sequence[EnvironmentSettings], target: TargetKind | None, pass_kind: PassKind,
               dry_run: bool | None) -> Report:
    async with AsyncExitStack() as outer:
        state_dir = config.daemon.state_dir
        if pass_kind == PassKind.CHECK and not writable(state_dir):
            # A read-only state_dir (a CI user, a read-only mount): the Git cache goes to a temporary
            # directory (a full fetch), the audit trail and inventory are read without writing.
            tmp = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="driftd-check-")))
            log.warning("state.read_only", path=str(state_dir), git_cache=str(tmp),
                        hint=f"daemon.state_dir {state_dir} is not writable: driftd check fetches into a temporary "
                             "directory (slower) and reads the state read-only; make it writable for this user "
                             "to reuse the Git cache")
            config = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, state_dir=tmp))
            return await _run_with(config, state_dir, envs, target, pass_kind, dry_run)
        return await _run_with(config, state_dir, envs, target, pass_kind, dry_run)


async def _run_with(config: Config, state_dir: Path, envs: Sequence[EnvironmentSettings], target: TargetKind | None,
                    pass_kind: PassKind, dry_run: bool | None) -> Report:
    sources = Sources(config)
    pool = TargetPool(config)
    progress = Progress(len(envs))
    reports: dict[str, EnvironmentReport] = {}
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(state_dir, write=pass_kind == PassKind.SYNC))
        stack.push_async_callback(pool.aclose)
        actor = f"cli:{_user()}" if pass_kind == PassKind.SYNC else "driftd"
        # CHECK passes only read the inventory from the store; they return before recording.
        reconciler = Reconciler(store, actor=actor)
        limiter = anyio.CapacityLimiter(8)
        fetches = _Fetches(sources)

        async def one(env: EnvironmentSettings) -> None:
            async with limiter:
                try:
                    reports[env.name] = await _one_env(config, env, sources, pool, reconciler, target, pass_kind,
                                                       dry_run, progress, fetches)
                except Exception as e:
                    log.exception("check.crashed", env=env.name)
                    reports[env.name] = EnvironmentReport(env.name, None, Status.ERROR,
                                                          error=f"internal error: {type(e).__name__}: {e}",
                                                          checked_at=utcnow())
                progress.advance()

        try:
            async with anyio.create_task_group() as tg:
                for env in envs:
                    tg.start_soon(one, env)
        finally:
            progress.close()
    return Report(tuple(reports[e.name] for e in envs))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run_check(config: Config, envs: Sequence[str] = (), target: TargetKind | None = None) -> Report:
    """Read-only pass over the named environments (all when empty)."""
    chosen = [e for e in config.environments if not envs or e.name in envs]
    return anyio.run(_run, config, chosen, target, PassKind.CHECK, None)


def run_sync(config: Config, env: str, target: TargetKind | None = None, dry_run: bool = False) -> Report:
    """Bring ``env`` back to Git once, on every target it has (or only ``target``)."""
    return anyio.run(_run, config, [config.environment(env)], target, PassKind.SYNC, dry_run)


async def _baseline(config: Config, env: EnvironmentSettings, objects: Sequence[str]) -> tuple[
        list[tuple[ResourceKey, tuple[Change, ...]]], str | None]:
    sources = Sources(config)
    pool = TargetPool(config)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(config.daemon.state_dir, write=True))
        if store is None:
            return [], f"the state store in {config.daemon.state_dir} cannot be opened: nothing can be recorded"
        stack.push_async_callback(pool.aclose)
        wanted = set(objects)

        def selected(key: ResourceKey) -> bool:
            return not wanted or bool({f"{key.kind}/{key.name}", f"{key.kind}/{key.namespace}/{key.name}",
                                       key.name} & wanted)

        reconciler = Reconciler(store, actor=f"cli:{_user()}", retake_baselines=selected)
        rt = EnvRuntime(env)
        await _Fetches(sources).fetch(env.repository)
        if not (await refresh(rt, sources, config, cluster=pool.cluster_info(env))).loaded:
            return [], rt.desired_error or "the desired state did not load"
        if env.aws is None:
            return [], f"environment {env.name} has no AWS target"
        pt = pool.get(TargetKind.AWS, env.aws.account)
        try:
            async with pt.limiter:
                await reconciler.pass_target(rt, pt.target, pass_kind=PassKind.CHECK)
        except DriftdError as e:
            return reconciler.retaken, str(e)
        return reconciler.retaken, rt.view(TargetKind.AWS).error


def run_baseline(config: Config, env: str, objects: Sequence[str] = ()) -> tuple[
        list[tuple[ResourceKey, tuple[Change, ...]]], str | None]:
    """Re-take the baseline of undeclared properties of ``env``'s AWS resources (all, or ``objects`` given as
    ``KIND/NAME``, ``KIND/REGION/NAME`` or ``NAME``): (objects re-taken with what moved, error or None)."""
    return anyio.run(_baseline, config, config.environment(env), list(objects))
