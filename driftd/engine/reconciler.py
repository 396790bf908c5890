"""One pass for one environment and target: check, decide, revert where allowed, record, report.

``EnvRuntime`` is the in-memory view of an environment between passes (its desired state, the
drifts of each target, what it reverted lately); an event-driven pass over a few objects updates it
in place, so the report always covers the whole environment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio

from .. import journal, metrics
from ..config import EnvironmentSettings
from ..diff import baseline
from ..errors import DriftdError
from ..log import get_logger
from ..model import (
    Action,
    Change,
    Coverage,
    DesiredState,
    Drift,
    DriftKind,
    EnvironmentReport,
    ObjectMode,
    PassKind,
    Pause,
    ResourceKey,
    Status,
    TargetKind,
    TargetResult,
)
from ..policy.brakes import RevertHistory, desired_version
from ..policy.decide import EnvCounts, Plan, plan
from ..policy.modes import InvalidObjectMode, environment_mode, object_mode_from_body, object_mode_from_metadata
from ..state import AuditEvent, EventKind, StateError, StateStore
from .protocols import ReportListener, Target

log = get_logger("driftd.engine")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TargetView:
    drifts: dict[ResourceKey, Drift] = field(default_factory=dict)
    resources: int = 0
    error: str | None = None
    last_success: datetime | None = None
    checked: bool = False
    coverage: Coverage | None = None


@dataclass
class EnvRuntime:
    """What the engine remembers about one environment between passes."""

    settings: EnvironmentSettings
    desired: DesiredState | None = None
    desired_error: str | None = None
    targets: dict[TargetKind, TargetView] = field(default_factory=dict)
    history: RevertHistory = field(default_factory=lambda: RevertHistory(3600.0))
    overrides: dict[ResourceKey, ObjectMode] = field(default_factory=dict)
    mode_errors: tuple[str, ...] = ()  # invalid driftd.io/mode values of the desired state
    pauses: tuple[Pause, ...] = ()  # break-glass pauses of this environment (the state store's)
    checked_at: datetime | None = None
    last_report: EnvironmentReport | None = None

    def set_desired(self, desired: DesiredState) -> None:
        self.desired = desired
        self.desired_error = None
        self.overrides, self.mode_errors = object_modes(desired)

    def view(self, kind: TargetKind) -> TargetView:
        return self.targets.setdefault(kind, TargetView())

    def report(self) -> EnvironmentReport:
        views = [self.targets[k] for k in sorted(self.targets)]
        drifts = tuple(d for v in views for _, d in sorted(v.drifts.items()))
        errors = [e for e in ([self.desired_error, *self.mode_errors] + [v.error for v in views]) if e]
        # A drift reverted in this pass is reported (and alerted as reverted) but no longer remains:
        # `driftd sync` exits as `check` would for what is left, and the daemon shows in_sync.
        remaining = any(d.action is not Action.REVERTED for d in drifts)
        status = Status.ERROR if errors else (Status.DRIFTED if remaining else Status.IN_SYNC)
        now = utcnow()
        mode = environment_mode(self.settings, now, self.pauses).mode
        return EnvironmentReport(
            name=self.settings.name,
            revision=self.desired.revision if self.desired else None,
            status=status,
            error="; ".join(errors) or None,
            resources=sum(v.resources for v in views),
            drifts=drifts,
            mode=mode,
            checked_at=self.checked_at,
            coverage=self.targets[TargetKind.AWS].coverage if TargetKind.AWS in self.targets else None,
            pauses=tuple(p for p in self.pauses if p.holds(now)),
        )

    def drifting(self) -> int:
        """Objects that count toward a drift storm: declared or inventoried ones, not unmanaged."""
        return sum(1 for v in self.targets.values() for d in v.drifts.values() if d.drift is not DriftKind.UNMANAGED)


def object_modes(desired: DesiredState) -> tuple[dict[ResourceKey, ObjectMode], tuple[str, ...]]:
    """Every object's ``driftd.io/mode`` override, read once per revision for every target. An invalid
    value is an error of the environment and the object is held in ``observe`` (never enforced on a
    value driftd could not read)."""
    out: dict[ResourceKey, ObjectMode] = {}
    errors: list[str] = []
    items: list[tuple[ResourceKey, str, Mapping[str, Any], bool]] = [
        (o.key, o.source, o.body, True) for o in desired.kubernetes]
    items += [(a.key, a.source, a.metadata, False) for a in desired.aws]
    for key, source, data, is_body in items:
        try:
            m = object_mode_from_body(data) if is_body else object_mode_from_metadata(data)
        except InvalidObjectMode as e:
            errors.append(f"{key} ({source}): {e}; held in observe")
            m = ObjectMode.OBSERVE
        if m is not None:
            out[key] = m
    return out, tuple(errors)


def declared_keys(desired: DesiredState, kind: TargetKind) -> frozenset[ResourceKey]:
    if kind is TargetKind.KUBERNETES:
        return frozenset(o.key for o in desired.kubernetes)
    return frozenset(a.key for a in desired.aws)


def declared_versions(desired: DesiredState, kind: TargetKind, renamed: Mapping[ResourceKey, ResourceKey],
                      wanted: set[ResourceKey]) -> dict[ResourceKey, str]:
    """``desired_version`` of what Git declares for each wanted key, under the key the target reports."""
    pairs: Iterable[tuple[ResourceKey, Mapping[str, Any]]] = (
        ((renamed.get(o.key, o.key), o.body) for o in desired.kubernetes) if kind is TargetKind.KUBERNETES
        else ((d.key, d.properties) for d in desired.aws))
    return {k: desired_version(body) for k, body in pairs if k in wanted}


def undeclared_inventory(inventory: frozenset[ResourceKey], declared: frozenset[ResourceKey]) -> set[ResourceKey]:
    """Inventoried keys Git no longer declares: the environment's orphans, whichever pass looks. A
    cluster-scoped object may be declared with the loader's namespace and inventoried without it."""
    names = {(k.target, k.kind, k.name, k.namespace) for k in declared}
    names |= {(k.target, k.kind, k.name, "") for k in declared}
    return {k for k in inventory if (k.target, k.kind, k.name, k.namespace) not in names}


def prune_allowed(env: EnvironmentSettings, kind: TargetKind) -> bool:
    return kind is TargetKind.KUBERNETES and env.kubernetes is not None and env.kubernetes.prune


@dataclass(frozen=True)
class PassResult:
    kind: TargetKind
    plan: Plan | None
    drifts: tuple[Drift, ...]
    error: str | None = None


class Reconciler:
    """Stateless apart from its collaborators; the per-environment memory is the EnvRuntime."""

    def __init__(self, store: StateStore | None, listeners: Sequence[ReportListener] = (), *,
                 clock: Callable[[], datetime] = utcnow, actor: str = "driftd",
                 revert_timeout: float = 120.0, retake_baselines: Callable[[ResourceKey], bool] | None = None) -> None:
        """``retake_baselines``: `driftd baseline` - replace the recorded baseline of the objects it selects."""
        self.store = store
        self.retake_baselines = retake_baselines
        self.retaken: list[tuple[ResourceKey, tuple[Change, ...]]] = []
        self.listeners = list(listeners)
        self.clock = clock
        self.actor = actor
        self.revert_timeout = revert_timeout
        # Replicas ([coordination]): may this replica still start reverting in this environment? Asked
        # right before the reverts, so none starts with less than a renew interval of its lease left.
        self.may_revert: Callable[[str], bool] | None = None

    async def pass_target(self, rt: EnvRuntime, target: Target, *, keys: frozenset[ResourceKey] | None = None,
                          pass_kind: PassKind = PassKind.RUN, dry_run: bool | None = None) -> PassResult:
        """One target of one environment; ``keys`` restricts it to what an event touched."""
        env, kind = rt.settings, target.kind
        view = rt.view(kind)
        desired = rt.desired
        if desired is None:
            view.error = None
            return PassResult(kind, None, (), rt.desired_error or "no desired state")
        t0 = time.monotonic()
        if self.store is not None:
            t = self.clock()
            rt.pauses = tuple(p for p in await self.store.pauses(env.name) if p.holds(t))
        try:
            inventory = await self.store.inventory(env.name, kind) if self.store else frozenset()
            if keys is not None:
                result: TargetResult = await target.check_objects(env, desired, keys, inventory=inventory)
            else:
                keys = None
                result = await target.check(env, desired, inventory=inventory)
            if result.undeclared_live and self.store is not None:
                result = await self._baselines(rt, result, record=pass_kind != PassKind.CHECK)
        except DriftdError as e:
            view.error = f"{kind}: {e}"
            view.checked = True
            log.warning("check.failed", env=env.name, target=str(kind), error=str(e), retryable=e.retryable)
            raise
        finally:
            metrics.reconcile_duration.labels(env.name, str(kind)).observe(time.monotonic() - t0)
        now = self.clock()
        declared = declared_keys(desired, kind)
        drifting_here = {d.key for d in result.drifts if d.drift is not DriftKind.UNMANAGED}
        others = rt.drifting() - sum(1 for k, d in view.drifts.items()
                                     if d.drift is not DriftKind.UNMANAGED and (keys is None or k in keys))
        own = result.resources if keys is None else (view.resources or len(declared))
        counts = EnvCounts(objects=own + sum(v.resources for k2, v in rt.targets.items() if k2 is not kind),
                           drifting=others + len(drifting_here),
                           orphaned=len(undeclared_inventory(inventory, declared | (result.declared or frozenset()))),
                           declared=len(declared))
        versions = declared_versions(desired, kind, result.renamed, {d.key for d in result.drifts})
        recent = rt.history.counts((d.key for d in result.drifts), now, env.brakes.fight_window, versions)
        overrides = rt.overrides if not result.renamed else \
            {result.renamed.get(k, k): m for k, m in rt.overrides.items()}
        p = plan(result.drifts, env, now, counts=counts, overrides=overrides, recent_reverts=recent,
                 desired_empty=not declared, prune_allowed=prune_allowed(env, kind),
                 pass_kind=pass_kind, pauses=rt.pauses, dry_run=dry_run)
        if pass_kind == PassKind.CHECK:
            final = tuple(replace(d, action=Action.REPORTED, reason=None) if d.action is Action.SKIPPED
                          and (d.reason or "").startswith("dry_run") else d for d in p.drifts)
            final = tuple(replace(d, action=Action.REPORTED) if d in p.revert else d for d in final)
            self._update_view(view, keys, final, result, now)
            return PassResult(kind, p, final)

        if p.revert and self.may_revert is not None and not self.may_revert(env.name):
            # Its lease is about to lapse: another replica may hold it soon, and must be the only one acting.
            raise DriftdError("not reverting: this replica's lease on the environment is about to lapse",
                              subject=f"environment {env.name}", retryable=True)
        # From here on live systems change: finish what was started even when asked to stop,
        # so every change made is also recorded. The deadline bounds the work (the reverts), never
        # the bookkeeping after it: that runs shielded and without a deadline, whatever happened.
        with anyio.CancelScope(shield=True):
            done = await self._revert_bounded(rt, target, desired, p)
            final = done + p.would_revert + p.kept
            for d in done:
                metrics.reverts_total.labels(env.name, str(kind), d.key.kind, str(d.action)).inc()
                if d.action is Action.REVERTED:
                    rt.history.record(d.key, now, versions.get(d.key))
                    log.info("drift.reverted", env=env.name, object=str(d.key), drift=str(d.drift))
                elif d.action is Action.REVERT_FAILED:
                    log.warning("drift.revert_failed", env=env.name, object=str(d.key), reason=d.reason)
            created = frozenset(d.key for d in done if d.drift is DriftKind.MISSING and d.action is Action.REVERTED)
            if created and kind is TargetKind.AWS and env.aws is not None and env.aws.baselines:
                await self._baseline_created(rt, target, desired, created, inventory)
            brake_events = [AuditEvent(now, env.name, EventKind.BRAKE, b.key, desired.revision,
                                       reason=f"{b.brake}: {b.detail}", actor=self.actor) for b in p.brakes]
            inventory_update = None
            if keys is None and declared and rt.desired_error is None:
                # The inventory is "what the last checked revision declares": a full pass over a desired
                # state that loaded completely updates it even when some objects' live reads failed
                # (else objects added meanwhile would never be reported orphaned). Kept besides: old
                # keys whose orphan status this pass could not determine, and orphans still live
                # (not forgotten until pruned).
                still = {d.key for d in final if d.drift is DriftKind.ORPHANED and d.action is not Action.REVERTED}
                now_declared = result.declared if result.declared is not None else declared
                inventory_update = now_declared | result.undetermined | still
            record_error = None
            if self.store is not None:
                try:
                    out = await self.store.record_pass(env.name, kind, desired.revision, now, final, scope=keys,
                                                       events=brake_events, inventory=inventory_update,
                                                       actor=self.actor)
                except StateError as e:
                    # The disk is full, the file unwritable: say so in the report (nothing was reverted
                    # without its intent on record: the journal refuses first); retried at the next pass.
                    record_error = f"state store: cannot record this pass: {e}"
                    log.error("state.write_failed", env=env.name, target=str(kind), error=str(e))
                else:
                    for k in out.opened:
                        log.info("drift.detected", env=env.name, object=str(k))
                    for k in out.resolved:
                        log.info("drift.resolved", env=env.name, object=str(k))
            for b in p.brakes:
                log.warning("brake.engaged", env=env.name, brake=str(b.brake), detail=b.detail,
                            object=str(b.key) if b.key else None)
                for listener in self.listeners:
                    await _safe(listener.safety_brake(env, str(b.brake), b.detail, key=b.key))
        self._update_view(view, keys, final, result, now)
        if record_error is not None:
            view.error = f"{view.error}; {record_error}" if view.error else record_error
        return PassResult(kind, p, final)

    async def _baselines(self, rt: EnvRuntime, result: TargetResult, *, record: bool) -> TargetResult:
        """Compare undeclared properties with their recorded baseline (diff.baseline); record the baseline of
        what is seen for the first time when this pass records (never in `driftd check`); re-take it for the
        objects `driftd baseline` selects. Each recording is an audit event."""
        assert self.store is not None
        env = rt.settings
        ns = f"baseline/{env.name}"
        stored = {k: json.loads(v) for k, v in (await self.store.kv_items(ns)).items()}
        now = self.clock()
        revision = rt.desired.revision if rt.desired else None
        changes: dict[ResourceKey, list[Change]] = {}
        events: list[AuditEvent] = []
        for key, live in sorted(result.undeclared_live.items()):
            kid = baseline.key_id(key)
            values = (stored.get(kid) or {}).get("values")
            if self.retake_baselines is not None:
                if not self.retake_baselines(key):
                    continue
                moved = tuple(baseline.diff(values or {}, live))
                await self.store.kv_put(ns, kid, json.dumps({"values": dict(live), "taken_at": now.isoformat(),
                                                             "revision": revision}, default=str))
                self.retaken.append((key, moved))
                events.append(AuditEvent(now, env.name, EventKind.BASELINE, key, revision, changes=moved,
                                         reason="baseline re-taken", actor=self.actor))
                continue
            if values is not None:
                changes[key] = baseline.diff(values, live)
            extended = baseline.extend(values, live) if record else None
            if extended is not None:
                await self.store.kv_put(ns, kid, json.dumps({"values": extended, "taken_at": now.isoformat(),
                                                             "revision": revision}, default=str))
                events.append(AuditEvent(now, env.name, EventKind.BASELINE, key, revision,
                                         reason="baseline recorded (first seen)", actor=self.actor))
        if events:
            await self.store.record_events(events)
        return replace(result, drifts=tuple(baseline.merge(result.drifts, changes)))

    async def _baseline_created(self, rt: EnvRuntime, target: Target, desired: DesiredState,
                                created: frozenset[ResourceKey], inventory: frozenset[ResourceKey]) -> None:
        """The baseline of what this pass created, read now: else a resource `driftd sync` created had none
        until the next recording pass, and a policy attached to it meanwhile was invisible to `driftd check`."""
        if self.store is None:
            return
        try:
            res = await target.check_objects(rt.settings, desired, created, inventory=inventory)
            await self._baselines(rt, replace(res, undeclared_live={k: v for k, v in res.undeclared_live.items()
                                                                    if k in created}), record=True)
        except DriftdError as e:  # the next recording pass takes it; never fail the pass over it
            log.warning("baseline.after_create_failed", env=rt.settings.name, error=str(e), retryable=e.retryable)

    async def _revert_bounded(self, rt: EnvRuntime, target: Target, desired: DesiredState, p: Plan
                              ) -> tuple[Drift, ...]:
        """The reverts, within ``revert_timeout``. Each write is journaled (intent before, outcome
        after, both shielded), so one cut short by the deadline is still on record."""
        if not p.revert:
            return ()
        with journal.use(self.store, env=rt.settings.name, revision=desired.revision, actor=self.actor), \
                anyio.move_on_after(self.revert_timeout) as work:
            return await self._revert(rt, target, desired, p)
        assert work.cancelled_caught
        log.warning("revert.deadline", env=rt.settings.name, target=str(target.kind), objects=len(p.revert),
                    timeout=self.revert_timeout)
        why = (f"revert_timeout: not finished within {self.revert_timeout:g}s; writes made are in the "
               "journal, the objects are re-checked on the next pass")
        return tuple(replace(d, action=Action.REVERT_FAILED, reason=why) for d in p.revert)

    async def _revert(self, rt: EnvRuntime, target: Target, desired: DesiredState, p: Plan) -> tuple[Drift, ...]:
        try:
            out = await target.revert(rt.settings, desired, p.revert, dry_run=False)
        except DriftdError as e:
            return tuple(replace(d, action=Action.REVERT_FAILED, reason=str(e)) for d in p.revert)
        except Exception as e:  # a bug in a target fails this revert, never the bookkeeping of the pass
            log.exception("revert.crashed", env=rt.settings.name, target=str(target.kind))
            return tuple(replace(d, action=Action.REVERT_FAILED, reason=f"{type(e).__name__}: {e}")
                         for d in p.revert)
        got = {d.key: d for d in out}
        # A target that forgot one is treated as a failure, never as success.
        return tuple(got.get(d.key) or replace(d, action=Action.REVERT_FAILED, reason="no answer from the target")
                     for d in p.revert)

    def _update_view(self, view: TargetView, keys: frozenset[ResourceKey] | None, final: Sequence[Drift],
                     result: TargetResult, now: datetime) -> None:
        if keys is None:
            view.drifts = {d.key: d for d in final}
            view.resources = result.resources
            view.coverage = result.checked_coverage
        else:
            for k in keys:
                view.drifts.pop(k, None)
            view.drifts.update({d.key: d for d in final})
        view.error = "; ".join(result.errors[:3]) + (f" (+{len(result.errors) - 3} more)"
                                                     if len(result.errors) > 3 else "") if result.errors else None
        view.error = None if not result.errors else f"{result.target}: {view.error}"
        view.last_success = now
        view.checked = True

    async def publish(self, rt: EnvRuntime) -> EnvironmentReport:
        """Build the environment's report, update the metrics and tell the listeners."""
        rt.checked_at = self.clock()
        report = rt.report()
        rt.last_report = report
        update_metrics(rt, report)
        for listener in self.listeners:
            await _safe(listener.environment_checked(rt.settings, report))
        return report


async def _safe(aw: object) -> None:
    try:
        await aw  # type: ignore[misc]
    except Exception:  # a listener must not raise; if it does, it must not stop the engine
        log.exception("listener.failed")


_last_labels: dict[str, tuple[set[tuple[str, ...]], set[tuple[str, ...]], tuple[str, str] | None,
                              str | None]] = {}


def update_metrics(rt: EnvRuntime, report: EnvironmentReport) -> None:
    """The engine's gauges for one environment; stale label sets are removed."""
    name = rt.settings.name
    old_drift, old_managed, old_info, old_rev = _last_labels.get(name, (set(), set(), None, None))
    drift_counts: dict[tuple[str, ...], int] = {}
    lk: tuple[str, ...]
    for d in report.drifts:
        if d.action is Action.REVERTED:  # reported once as reverted, but no longer drifted
            continue
        lk = (name, str(d.key.target), d.key.kind, str(d.drift))
        drift_counts[lk] = drift_counts.get(lk, 0) + 1
    for lk in old_drift - drift_counts.keys():
        metrics.drifted_resources.remove(*lk)
    for lk, n in drift_counts.items():
        metrics.drifted_resources.labels(*lk).set(n)
    managed: dict[tuple[str, ...], int] = {}
    if rt.desired is not None:
        for o in rt.desired.kubernetes:
            lk = (name, "kubernetes", o.key.kind)
            managed[lk] = managed.get(lk, 0) + 1
        for a in rt.desired.aws:
            lk = (name, "aws", a.key.kind)
            managed[lk] = managed.get(lk, 0) + 1
    for lk in old_managed - managed.keys():
        metrics.managed_resources.remove(*lk)
    for lk, n in managed.items():
        metrics.managed_resources.labels(*lk).set(n)
    if report.coverage is not None:
        metrics.declared_checked.labels(name, "aws").set(report.coverage.checked)
        metrics.declared_total.labels(name, "aws").set(report.coverage.declared)
    info = (str(report.mode or rt.settings.mode), str(report.status))
    if old_info is not None and old_info != info:
        metrics.environment_info.remove(name, *old_info)
    metrics.environment_info.labels(name, *info).set(1)
    rev = report.revision
    if old_rev is not None and old_rev != rev:
        metrics.source_revision_info.remove(name, old_rev)
    if rev is not None:
        metrics.source_revision_info.labels(name, rev).set(1)
    _last_labels[name] = (set(drift_counts), set(managed), info, rev)
    for scope in ("environment", "object"):
        metrics.pauses.labels(name, scope).set(sum(1 for p in report.pauses if bool(p.kind) == (scope == "object")))


def forget_metrics(name: str) -> None:
    """An environment left the config: drop every series labelled with it (call once its tasks ended,
    or a pass finishing late would publish them again)."""
    _last_labels.pop(name, None)
    metrics.forget_environment(name)


def views_summary(views: Mapping[TargetKind, TargetView]) -> dict[str, object]:
    return {str(k): {"resources": v.resources, "drifts": len(v.drifts), "error": v.error,
                     "last_success": v.last_success.isoformat() if v.last_success else None}
            for k, v in views.items()}
