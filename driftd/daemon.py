"""``driftd run``: the long-running process.

Structured concurrency: one root task group holds the signal handler, the HTTP server, the
alert notifier, systemd supervision, retention, one loop per repository and one worker per
environment. Each worker owns its environment's runtime and runs its passes one at a time, so
passes of one environment never overlap; workers of different environments run concurrently,
bounded per cluster / account by the target pool's limiters and for git by the sources' limiter.

Triggers of a pass: a new revision of the environment's branch (at once), Kubernetes informer
events for objects the environment declares, inventoried or watches (debounced ~200 ms), the
periodic full resync (``kubernetes.resync_interval``), the AWS poll (``interval`` with jitter), and
retries after a failure (capped exponential backoff; other environments are not affected).

Desired state in error (the repository cannot be fetched, the branch is gone, the tree does not
parse): the environment reports ``error`` with the reason, keeps its last good revision (the
report's ``revision``) and the drifts seen at it, and runs NO pass at all until Git can be read
again: nothing is reverted, nothing is pruned, a deleted branch is never read as "every object was
removed". Loop triggers (events, resyncs) are dropped meanwhile; the recovery's load re-runs a full
pass at once.

Image policies (``[[environments.images]]``): one loop per such environment polls its registries
every ``interval`` (with jitter) and at once after each new revision, never while the desired state
is in error. Findings are recorded in the audit trail (event ``image``, each distinct finding once)
and handed to the image listeners, which alert in alert and enforce modes. A write-back commit wakes
the repository loop, so the new revision is fetched, loaded and (in enforce mode) applied at once.

Signals: SIGTERM/SIGINT drain (in-flight reverts finish and are recorded, bounded by
``daemon.shutdown_timeout``) then exit 0. SIGHUP reloads the config file: an invalid file is
logged with its reasons and the old config keeps running; otherwise environments are added,
removed or restarted, and the caches of repositories and targets that did not change are kept.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import anyio
import anyio.abc

from . import metrics, secrets
from .alerting import AlertNotifier
from .config import Config, EnvironmentSettings, load_config
from .engine import pauses
from .engine.coordination import Coordinator
from .engine.desired import refresh
from .engine.images import ImageAudit
from .engine.pools import PooledTarget, Sources, TargetPool
from .engine.protocols import ImageFindingListener, LeaseStore, ReportListener
from .engine.reconciler import EnvRuntime, Reconciler, declared_keys, forget_metrics, utcnow
from .engine.status import EngineStatus
from .engine.timing import Backoff, jitter
from .errors import ConfigErrors, DriftdError
from .hooks import GitHooks, HookRepository
from .log import get_logger
from .model import Action, DesiredState, ResourceKey, TargetKind
from .state import StateError, StateStore
from .state import lock as state_lock

log = get_logger("driftd.daemon")

DEBOUNCE = 0.2
PAUSE_POLL = 2.0  # seconds between reads of the pauses `driftd pause` records
RETENTION_EVERY = 3600.0


@dataclass
class Worker:
    """One environment: its runtime, its pending triggers, its task's cancel scope."""

    settings: EnvironmentSettings
    rt: EnvRuntime
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    wake: anyio.Event = field(default_factory=anyio.Event)
    revision_due: bool = True
    dirty: dict[TargetKind, set[ResourceKey]] = field(default_factory=dict)
    first_event: float | None = None
    full_due: set[TargetKind] = field(default_factory=set)
    watched: frozenset[ResourceKey] = frozenset()  # declared or inventoried Kubernetes keys
    watch_scope: anyio.CancelScope | None = None
    watch_done: anyio.Event = field(default_factory=anyio.Event)  # set when the watch task has ended
    fetch_error: str | None = None  # the repository's latest fetch failed (set by the repository loop)
    images_wake: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)  # set when the worker's task has ended

    def poke(self) -> None:
        self.wake.set()

    def new_revision(self) -> None:
        self.revision_due = True
        self.poke()

    def changed(self, kind: TargetKind, key: ResourceKey) -> None:
        self.dirty.setdefault(kind, set()).add(key)
        if self.first_event is None:
            self.first_event = time.monotonic()
        self.poke()

    def concerns(self, key: ResourceKey) -> bool:
        ks = self.settings.kubernetes
        return key in self.watched or (ks is not None and key.namespace in ks.watch_namespaces)


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sources = Sources(config)
        self.pool = TargetPool(config)
        self.workers: dict[str, Worker] = {}
        self.status = EngineStatus(lambda: [w.rt for w in self.workers.values()])
        self.listeners: list[ReportListener] = []
        self.image_listeners: list[ImageFindingListener] = []
        self.images: ImageAudit | None = None
        self.notifier: AlertNotifier | None = None
        self.store: StateStore | None = None
        self.reconciler: Reconciler | None = None
        self.repo_scopes: dict[str, anyio.CancelScope] = {}
        self.repo_wake: dict[str, anyio.Event] = {}
        self.tg: anyio.abc.TaskGroup | None = None
        self._dispatch: dict[tuple[TargetKind, str], Callable[[ResourceKey], None]] = {}
        self._systemd: object | None = None
        self.coordinator: Coordinator | None = None  # [coordination]: replicas share the environments
        self._leases: LeaseStore | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def main(self) -> int:
        try:
            # One daemon per state_dir (state/lock.py): taken before the store opens, held until exit.
            with state_lock.exclusive(self.config.daemon.state_dir):
                async with StateStore.open(self.config.daemon.state_dir) as store:
                    self.store = store
                    await self._recover_writes(store)
                    return await self._run(store)
        except StateError as e:
            log.error("daemon.state_unavailable", error=str(e))
            return 2

    @staticmethod
    async def _recover_writes(store: StateStore) -> None:
        """Writes in flight when the previous daemon died are marked ``interrupted`` (driftd.journal);
        the first pass of every environment is a full one, so their objects are re-checked at once."""
        for w in await store.mark_interrupted():
            log.warning("write.interrupted", env=w.env, target=w.target, object=w.subject, operation=w.operation,
                        intent_id=w.id)

    async def _run(self, store: StateStore) -> int:
        shutdown = self.config.daemon.shutdown_timeout
        code = 0
        async with anyio.create_task_group() as root:
            self.tg = root
            root.start_soon(self._signals, root.cancel_scope)
            try:
                await self._start_faces(root)
            except DriftdError as e:
                log.error("daemon.start_failed", error=str(e))
                root.cancel_scope.cancel()
                return 2
            # After the faces: the reconciler copies the listener list, the notifier must be in it.
            coord = self.config.coordination
            # With replicas, the audit trail says which one acted; alone, it stays "driftd" as always.
            actor = f"driftd/{coord.identity}" if coord is not None else "driftd"
            self.reconciler = Reconciler(store, self.listeners, revert_timeout=max(1.0, shutdown * 0.8),
                                         actor=actor)
            root.start_soon(self._retention)
            if coord is not None:
                try:
                    await self._start_coordinator(root)
                except DriftdError as e:
                    log.error("daemon.start_failed", error=str(e))
                    root.cancel_scope.cancel()
                    return 2
            root.start_soon(self._pauses)
            self._apply(self.config, first=True)
            self.status.config_loaded = True
            log.info("daemon.started", environments=len(self.config.environments),
                     repositories=len(self.sources.caches))
        # Here every task has stopped: shielded reverts finished and were recorded.
        with anyio.CancelScope(shield=True), anyio.move_on_after(shutdown):
            if self._leases is not None:
                await self._leases.aclose()
            await self.pool.aclose()
            if self.images is not None:
                await self.images.aclose()
            for listener in dict.fromkeys([*self.listeners, *self.image_listeners]):  # each once
                close = getattr(listener, "aclose", None)
                if close is not None:
                    await close()
        log.info("daemon.stopped")
        return code

    async def _start_faces(self, root: anyio.abc.TaskGroup) -> None:
        """The alerting engineer's pieces, each optional: HTTP server, Alertmanager, systemd."""
        if self.config.alertmanager.urls:
            self._start_notifier(root, self.config)
        try:
            from .server import serve
        except ImportError:
            serve = None  # type: ignore[assignment]
        if serve is not None:
            hooks = GitHooks(self._hook_repositories, self._wake_repository)
            await root.start(partial(serve, audit=self.store, hooks=hooks), self.config.daemon, self.status)
        try:
            from . import systemd
        except ImportError:
            return
        self._systemd = systemd.Notifier.from_env()
        root.start_soon(systemd.supervise, self.status, self._systemd)

    async def _start_coordinator(self, root: anyio.abc.TaskGroup) -> None:
        """Leases on the configured cluster (kubernetes_asyncio lives in targets.kubernetes: loaded by name)."""
        coord = self.config.coordination
        assert coord is not None
        cluster = self.config.clusters[coord.cluster]
        module = importlib.import_module("driftd.targets.kubernetes.leases")
        self._leases = await module.KubeLeaseStore.open(coord, cluster)
        self.coordinator = Coordinator(coord, self._leases, self)
        self.status.coordinator = self.coordinator
        if self.reconciler is not None:
            self.reconciler.may_revert = self.coordinator.may_act
        log.info("coordination.joining", replica=coord.identity, group=coord.group, namespace=coord.namespace,
                 cluster=coord.cluster, lease_duration=coord.lease_duration)
        await root.start(self.coordinator.run)

    # --- ShardListener: the coordinator hands environments to this replica and takes them back ---

    async def acquired(self, env: str, handover: Mapping[str, str]) -> None:
        settings = next((e for e in self.config.environments if e.name == env), None)
        if settings is None or self.tg is None:
            return
        old = self.workers.get(env)
        if old is not None:  # lost a moment ago and taken back: let the old worker finish first
            old.scope.cancel()
            with anyio.move_on_after(self.config.daemon.shutdown_timeout):
                await old.done.wait()
        if self.notifier is not None:
            self.notifier.adopt(env, handover)
        w = Worker(settings, EnvRuntime(settings))
        self.workers[env] = w
        self.tg.start_soon(self._worker, w)

    async def released(self, env: str, *, lost: bool) -> Mapping[str, str]:
        w = self.workers.pop(env, None)
        if w is not None:
            w.scope.cancel()
            # In-flight reverts are shielded: they finish and are recorded before the lease is let go.
            with anyio.move_on_after(self.config.daemon.shutdown_timeout):
                await w.done.wait()
        forget_metrics(env)  # the new holder exports this environment's series
        state: Mapping[str, str] = {}
        if self.notifier is not None:
            state = self.notifier.handover_state(env)  # taken after the last pass, before they are dropped
            self.notifier.hand_off(env)
        log.info("env.handed_over" if not lost else "env.lost", env=env)
        return state

    def handover_state(self, env: str) -> Mapping[str, str]:
        return self.notifier.handover_state(env) if self.notifier is not None else {}

    def _hook_repositories(self) -> list[HookRepository]:
        """Repositories a push webhook may wake: those with a ``webhook_secret_file``."""
        return [HookRepository(r.name, r.url, r.webhook_secret_file) for r in self.config.repositories.values()
                if r.webhook_secret_file is not None]

    def _wake_repository(self, name: str) -> None:
        """A verified push webhook: fetch ``name`` now (its loop then loads and passes its environments)."""
        wake = self.repo_wake.get(name)
        if wake is not None:
            wake.set()

    def _start_notifier(self, root: anyio.abc.TaskGroup, config: Config) -> AlertNotifier:
        notifier = self.notifier = AlertNotifier(config.alertmanager, config.daemon)
        self.listeners.append(notifier)
        self.image_listeners.append(notifier)
        if self.reconciler is not None:  # started by a reload: the reconciler holds its own copy of the list
            self.reconciler.listeners.append(notifier)
        root.start_soon(notifier.run)
        return notifier

    async def _reconfigure_alerting(self, new: Config) -> None:
        """``[alertmanager]`` changed: the running notifier takes the new settings (its outbox, with every
        open and queued alert, carries over); a first ``urls`` starts one."""
        if new.alertmanager == self.config.alertmanager and new.daemon.listen == self.config.daemon.listen:
            return
        if self.notifier is not None:
            await self.notifier.reconfigure(new.alertmanager, new.daemon)
        elif new.alertmanager.urls and self.tg is not None:
            self._start_notifier(self.tg, new)

    def _notify_systemd(self, what: str) -> None:
        n = self._systemd
        fn = getattr(n, what, None) if n is not None else None
        if fn is not None:
            fn()

    async def _signals(self, root: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for sig in sigs:
                if sig == signal.SIGHUP:
                    await self._reload()
                    continue
                log.info("daemon.stopping", signal=signal.Signals(sig).name)
                self._notify_systemd("stopping")
                root.cancel()
                return

    async def _reload(self) -> None:
        self._notify_systemd("reloading")
        try:
            new = await anyio.to_thread.run_sync(load_config, self.config.path)
        except ConfigErrors as e:
            log.error("config.reload_rejected", path=str(self.config.path), reason=str(e),
                      errors=[str(x) for x in e.errors])
            self._notify_systemd("ready")
            return
        secrets.configure(new.daemon.secret_name_patterns)
        await self.pool.update(new)
        await self._reconfigure_alerting(new)
        old = self.config
        if self.images is not None:
            await self.images.reconfigure(new)
        self.config = new
        self.sources.update(new)
        removed = [n for n in self.workers if n not in {e.name for e in new.environments}]
        gone = [self.workers.pop(name) for name in removed]
        for w in gone:
            w.scope.cancel()
        for w in gone:
            name = w.settings.name
            # A pass in flight finishes its shielded reverts and records first; only then are the series
            # dropped, so nothing it publishes on the way out brings them back.
            with anyio.move_on_after(self.config.daemon.shutdown_timeout):
                await w.done.wait()
            forget_metrics(name)
            if self.store is not None:
                await self.store.close_environment(name, utcnow(), "environment removed from the config")
        self._apply(new, first=False)
        log.info("config.reloaded", path=str(new.path), environments=len(new.environments),
                 removed=removed, previous=len(old.environments))
        self._notify_systemd("ready")

    def _apply(self, config: Config, *, first: bool) -> None:
        """Start what is new, restart what changed; repository loops follow their environments.
        With ``[coordination]`` only the environments this replica holds have workers; the coordinator
        starts and stops the others' as leases come and go."""
        assert self.tg is not None
        if self.coordinator is not None:
            self.coordinator.set_environments(tuple(e.name for e in config.environments))
        for env in config.environments:
            w = self.workers.get(env.name)
            if w is not None and w.settings == env:
                continue
            if self.coordinator is not None and not self.coordinator.holds(env.name):
                continue
            if w is not None:
                w.scope.cancel()
            w = Worker(env, EnvRuntime(env))
            self.workers[env.name] = w
            self.tg.start_soon(self._worker, w)
        wanted = {env.repository for env in config.environments}
        for name in list(self.repo_scopes):
            if name not in wanted or name not in self.sources.caches:
                self.repo_scopes.pop(name).cancel()
        for name in wanted:
            if name not in self.repo_scopes and name in self.sources.caches:
                scope = anyio.CancelScope()
                self.repo_scopes[name] = scope
                self.tg.start_soon(self._repo_loop, name, scope)
            elif not first:
                self.repo_wake.get(name, anyio.Event()).set()

    # --- repositories ----------------------------------------------------------------------

    async def _repo_loop(self, name: str, scope: anyio.CancelScope) -> None:
        backoff = Backoff(base=2.0, cap=300.0)
        with scope:
            while True:
                cache = self.sources.caches.get(name)
                if cache is None:
                    return
                delay = jitter(cache.settings.poll_interval)
                # Before the fetch: a push webhook arriving while it runs wakes the next one at once.
                wake = self.repo_wake[name] = anyio.Event()
                try:
                    result = await self.sources.fetch(name)
                    backoff.reset()
                    for w in self._envs_of(name):
                        recovered, w.fetch_error = w.fetch_error is not None, None
                        if recovered or w.rt.desired is None or w.settings.branch in result.changed \
                                or w.settings.branch in result.removed:
                            w.new_revision()
                except Exception as e:  # whatever a fetch throws, the loop backs off and retries
                    delay = min(delay, backoff.next_delay())
                    if not isinstance(e, (DriftdError, TimeoutError)):
                        log.exception("source.fetch_crashed", repository=name)
                    reason = str(e) or f"fetch timed out ({type(e).__name__})"
                    log.warning("source.fetch_failed", repository=name, error=reason, retry_in=round(delay, 1))
                    for w in self._envs_of(name):
                        # Every environment of the repository reports it; none acts on what it has.
                        w.fetch_error = f"cannot fetch repository {name}: {reason}"
                        w.new_revision()
                with anyio.move_on_after(delay):
                    await wake.wait()

    def _envs_of(self, repository: str) -> list[Worker]:
        return [w for w in self.workers.values() if w.settings.repository == repository]

    # --- environments ----------------------------------------------------------------------

    async def _worker(self, w: Worker) -> None:
        try:
            await self._worker_body(w)
        finally:
            w.done.set()

    async def _worker_body(self, w: Worker) -> None:
        env = w.settings
        backoff = Backoff(base=1.0, cap=300.0)
        since = utcnow() - timedelta(seconds=env.brakes.fight_window)
        w.rt.history.horizon = env.brakes.fight_window
        store = self.store
        assert store is not None
        assert self.reconciler is not None
        with w.scope:
            try:
                w.rt.history.seed(await store.revert_times(env.name, since))
            except StateError as e:
                log.warning("state.read_failed", env=env.name, error=str(e))
            async with anyio.create_task_group() as tg:
                if env.images:
                    tg.start_soon(self._images_loop, w)
                next_full: dict[TargetKind, float] = {}
                while True:
                    now = time.monotonic()
                    due = [k for k, t in next_full.items() if t <= now]
                    if not w.revision_due and not w.dirty and not due and not w.full_due:
                        timeout = max(0.05, min(next_full.values(), default=now + 3600) - now)
                        w.wake = anyio.Event()
                        with anyio.move_on_after(timeout):
                            await w.wake.wait()
                        continue
                    if w.dirty and not w.revision_due:
                        await anyio.sleep(DEBOUNCE)  # let a burst of events settle into one pass
                    try:
                        await self._cycle(w, tg, next_full)
                        backoff.reset()
                    except Exception as e:
                        delay = backoff.next_delay()
                        if not isinstance(e, DriftdError):
                            log.exception("env.crashed", env=env.name)
                        log.warning("env.failed", env=env.name, error=str(e), retry_in=round(delay, 1))
                        await self.reconciler.publish(w.rt)
                        w.wake = anyio.Event()
                        with anyio.move_on_after(delay):
                            await w.wake.wait()  # a new revision retries at once

    async def _cycle(self, w: Worker, tg: anyio.abc.TaskGroup, next_full: dict[TargetKind, float]) -> None:
        env, rt = w.settings, w.rt
        assert self.reconciler is not None
        assert self.store is not None
        if self.coordinator is not None and not self.coordinator.may_act(env.name):
            # The lease is about to lapse (renewals failing): no pass may start that could outlive it; the
            # coordinator stops this worker in a moment, and whoever takes over runs a full pass.
            self._hold(w, next_full)
            w.revision_due = False
            return
        full: set[TargetKind] = set(w.full_due)
        w.full_due.clear()
        now = time.monotonic()
        full |= {k for k, t in next_full.items() if t <= now}
        cache = self.sources.caches.get(env.repository)
        if w.revision_due and cache is not None and cache.last_fetch is None and cache.last_error is None:
            w.revision_due = False  # the first fetch is under way: its end wakes this environment again
            return
        if w.revision_due:
            w.revision_due = False
            got = await refresh(rt, self.sources, self.config, fetch_error=w.fetch_error,
                                cluster=self.pool.cluster_info(env))
            if not got.loaded:
                self.pool.withdraw(env)
                self._hold(w, next_full)
                log.warning("desired.load_failed", env=env.name, last_good_revision=got.last_good, error=got.error)
                await self.reconciler.publish(rt)
                return
            if got.changed and rt.desired is not None:
                state = rt.desired
                log.info("desired.loaded", env=env.name, revision=state.revision,
                         kubernetes=len(state.kubernetes), aws=len(state.aws))
                full |= {k for k, _ in self.pool.names(env)}
                w.images_wake.set()
                await self._rewatch(w, tg)
        if rt.desired is None or rt.desired_error:
            self._hold(w, next_full)
            return
        dirty, w.dirty = w.dirty, {}
        first_event, w.first_event = w.first_event, None
        for kind, name in self.pool.names(env):
            pt = self.pool.get(kind, name)
            keys = dirty.get(kind)
            if kind not in full and not keys:
                continue
            async with pt.limiter:
                scope = None if kind in full else frozenset(keys or ())
                res = await self.reconciler.pass_target(rt, pt.target, keys=scope)
            if kind is TargetKind.KUBERNETES:
                interval = env.kubernetes.resync_interval if env.kubernetes else env.interval
                if kind in full:
                    w.watched = declared_keys(rt.desired, kind) | await self.store.inventory(env.name, kind)
            else:
                interval = env.interval
            if kind in full:
                next_full[kind] = time.monotonic() + jitter(interval)
            if first_event is not None and keys and any(d.key in keys for d in res.drifts):
                metrics.detection_latency.observe(time.monotonic() - first_event)
            # Confirm a revert soon: Kubernetes sends the revert's own event; AWS has none.
            if kind is TargetKind.AWS and any(d.action is Action.REVERTED for d in res.drifts):
                next_full[kind] = time.monotonic() + 2.0
        await self.reconciler.publish(rt)

    @staticmethod
    def _hold(w: Worker, next_full: dict[TargetKind, float]) -> None:
        """No pass while the desired state is in error: drop pending triggers (the loop would spin on
        them); the load that ends the error schedules a full pass of every target."""
        w.dirty.clear()
        w.first_event = None
        w.full_due.clear()
        next_full.clear()

    async def _rewatch(self, w: Worker, tg: anyio.abc.TaskGroup) -> None:
        """(Re)start the informers for this environment's Kubernetes objects at its new revision."""
        env, rt = w.settings, w.rt
        if env.kubernetes is None or rt.desired is None:
            return
        pt = self.pool.get(TargetKind.KUBERNETES, env.kubernetes.cluster)
        watch = pt.target.watch
        if w.watch_scope is not None:
            w.watch_scope.cancel()
            # Let the old watch release its informers before the new one takes them: a hold taken while
            # the old one is still letting go can be left holding an informer nobody runs (stale reads).
            with anyio.move_on_after(10):
                await w.watch_done.wait()
        w.watched = declared_keys(rt.desired, TargetKind.KUBERNETES)
        dispatch = self._dispatcher(TargetKind.KUBERNETES, env.kubernetes.cluster)
        scope = w.watch_scope = anyio.CancelScope()
        done = w.watch_done = anyio.Event()
        desired = rt.desired

        async def run(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    try:
                        await watch(env, desired, dispatch, task_status=task_status)
                    except Exception as e:  # a watch that fails never takes the worker (or the daemon) down
                        if isinstance(e, DriftdError):
                            log.warning("watch.failed", env=env.name, error=str(e))
                        else:
                            log.exception("watch.crashed", env=env.name)
                        with contextlib.suppress(RuntimeError):  # it may have started before failing
                            task_status.started()
            finally:
                done.set()

        with anyio.move_on_after(60):
            await tg.start(run)

    def _dispatcher(self, kind: TargetKind, name: str) -> Callable[[ResourceKey], None]:
        """One callback per target, shared by its environments (informers are shared too)."""
        key = (kind, name)
        if key not in self._dispatch:
            def dispatch(k: ResourceKey) -> None:
                for w in self.workers.values():
                    if w.rt.desired is not None and any(n == key for n in self.pool.names(w.settings)) \
                            and w.concerns(k):
                        w.changed(kind, k)
            self._dispatch[key] = dispatch
        return self._dispatch[key]

    # --- image policies --------------------------------------------------------------------

    async def _images_loop(self, w: Worker) -> None:
        env = w.settings
        while True:
            if w.rt.desired is not None and not w.rt.desired_error:
                try:
                    await self._poll_images(w, w.rt.desired)
                except Exception:  # one environment's image trouble never stops the daemon
                    log.exception("images.crashed", env=env.name)
            w.images_wake = anyio.Event()
            with anyio.move_on_after(jitter(env.interval)):
                await w.images_wake.wait()

    async def _poll_images(self, w: Worker, desired: DesiredState) -> None:
        if self.images is None:
            assert self.store is not None
            self.images = ImageAudit(self.config, self.store, self.image_listeners)
        if await self.images.poll(w.settings, desired) is not None:
            wake = self.repo_wake.get(w.settings.repository)
            if wake is not None:
                wake.set()  # fetch the commit now: the environment then loads and applies it

    # --- break-glass pauses (driftd pause / resume, another process) ------------------------

    async def _pauses(self) -> None:
        """A pause that starts, ends or expires changes objects' modes: run a full pass of the environment
        at once (after a resume, a change made while paused is reverted now, not at the next resync)."""
        while True:
            await anyio.sleep(PAUSE_POLL)
            store = self.store
            if store is None:
                continue
            try:
                now_holding = await pauses.holding(store, utcnow())
            except StateError as e:
                log.warning("state.read_failed", what="pauses", error=str(e))
                continue
            for w in self.workers.values():
                mine = now_holding.get(w.settings.name, ())
                if mine != w.rt.pauses:
                    log.info("pauses.changed", env=w.settings.name, pauses=[p.scope for p in mine])
                    w.rt.pauses = mine
                    w.full_due |= {k for k, _ in self.pool.names(w.settings)}
                    w.poke()

    # --- housekeeping ----------------------------------------------------------------------

    async def _retention(self) -> None:
        while True:
            if self.store is not None:
                try:
                    n = await self.store.prune(self.config.daemon.retention, utcnow())
                    if n:
                        log.info("state.pruned", rows=n, retention_days=round(self.config.daemon.retention / 86400, 1))
                except StateError as e:
                    log.warning("state.prune_failed", error=str(e))
            await anyio.sleep(RETENTION_EVERY)


def run(config: Config) -> int:
    """Run until SIGTERM/SIGINT. Returns the process exit code."""
    return anyio.run(Daemon(config).main)


__all__ = ["Daemon", "PooledTarget", "run"]
