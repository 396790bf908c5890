"""Drifts + environment settings + brake state -> the action plan. Pure.

Order of the rules (the first that applies wins):
1. disabled objects (``driftd.io/mode: disabled``) are left out of the plan;
2. unmanaged resources are report-only, never deleted;
3. observe / alert (including enforce outside its windows, and paused objects): reported;
4. orphaned objects are deleted only where pruning is allowed;
5. an empty desired state never leads to action (a bad commit, a wrong path);
5b. prune limit: when the environment's orphans (all of them, not this pass's share) exceed
   ``prune_max_fraction`` of what it manages, no orphan is deleted, in any pass kind, until the
   operator raises the limit or declares the objects again;
6. drift storm holds every revert of the environment;
7. fight: an object reverted too often lately is left alone;
8. dry run: recorded as would-revert;
9. the revert budget per cycle; the rest waits for the next cycle.

Each object's mode comes from ``modes.decide_mode`` (the one place). ``sync`` (the CLI's explicit
``driftd sync``) reverts whatever is reportable regardless of the environment mode, windows and
brakes 6, 7 and 9, but still honours per-object ``observe``/``disabled``, pauses and the
empty-desired-state guard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from ..config import EnvironmentSettings
from ..model import Action, Drift, DriftKind, ObjectMode, PassKind, Pause, ResourceKey
from .brakes import Brake, is_fight, is_storm
from .modes import EffectiveMode, decide_mode


class SkipReason(StrEnum):
    DRY_RUN = "dry_run"
    DRIFT_STORM = "drift_storm"
    FIGHT = "fight"
    REVERT_LIMIT = "revert_limit"
    EMPTY_DESIRED = "empty_desired_state"
    PRUNE_DISABLED = "prune_disabled"
    PRUNE_LIMIT = "prune_limit"
    UNMANAGED = "unmanaged"


@dataclass(frozen=True)
class BrakeEvent:
    brake: Brake
    detail: str
    key: ResourceKey | None = None


@dataclass(frozen=True)
class Plan:
    revert: tuple[Drift, ...]  # hand these to Target.revert (mode set, action still REPORTED)
    would_revert: tuple[Drift, ...]  # dry run: action SKIPPED, reason starts with "dry_run"
    kept: tuple[Drift, ...]  # reported or skipped, with mode/action/reason set
    brakes: tuple[BrakeEvent, ...] = ()

    @property
    def drifts(self) -> tuple[Drift, ...]:
        """Everything the plan covers, reverts as planned (before the target's answer)."""
        return self.revert + self.would_revert + self.kept


@dataclass(frozen=True)
class EnvCounts:
    """Environment-wide figures for the storm and prune brakes: an event-driven pass sees a few
    objects, a per-cycle cap a share of them; both limits are about the whole environment."""

    objects: int
    drifting: int
    # This target's inventoried objects that Git no longer declares, and what it declares: the prune
    # limit is taken over these, never over the orphans that happen to be in this pass.
    orphaned: int = 0
    declared: int = 0


def plan(drifts: Sequence[Drift], env: EnvironmentSettings, now: datetime, *,
         counts: EnvCounts,
         overrides: Mapping[ResourceKey, ObjectMode] | None = None,
         recent_reverts: Mapping[ResourceKey, int] | None = None,
         desired_empty: bool = False,
         prune_allowed: bool = False,
         pass_kind: PassKind = PassKind.RUN,
         pauses: Sequence[Pause] = (),
         dry_run: bool | None = None) -> Plan:
    overrides = overrides or {}
    recent_reverts = recent_reverts or {}
    sync = pass_kind is PassKind.SYNC
    dry = env.dry_run if dry_run is None else dry_run
    brakes: list[BrakeEvent] = []
    kept: list[Drift] = []
    candidates: list[Drift] = []

    for d in sorted(drifts, key=lambda x: x.key):
        em = decide_mode(env, now, override=overrides.get(d.key), key=d.key, pass_kind=pass_kind, pauses=pauses,
                         dry_run=dry_run)
        if em.mode is None:
            continue
        d = replace(d, mode=em.mode)
        if d.drift is DriftKind.UNMANAGED or not em.enforces:
            kept.append(_note(d, em))
        elif d.drift is DriftKind.ORPHANED and not prune_allowed:
            kept.append(_skip(d, SkipReason.PRUNE_DISABLED, "pruning is not enabled for this target"))
        else:
            candidates.append(d)

    if candidates and desired_empty:
        brakes.append(BrakeEvent(Brake.EMPTY_DESIRED, "the desired state is empty: no action taken"))
        kept += [_skip(d, SkipReason.EMPTY_DESIRED, "desired state is empty") for d in candidates]
        candidates = []

    prunes = [d for d in candidates if d.drift is DriftKind.ORPHANED]
    if prunes and (held := _prune_over_limit(env, counts, prunes)) is not None:
        brakes.append(BrakeEvent(Brake.PRUNE_LIMIT, held))
        kept += [_skip(d, SkipReason.PRUNE_LIMIT, held) for d in prunes]
        candidates = [d for d in candidates if d.drift is not DriftKind.ORPHANED]

    if candidates and not sync and is_storm(counts.drifting, counts.objects, env.brakes):
        detail = (f"{counts.drifting} of {counts.objects} objects drifted "
                  f"(more than {env.brakes.storm_fraction:.0%}); enforcement held")
        brakes.append(BrakeEvent(Brake.DRIFT_STORM, detail))
        kept += [_skip(d, SkipReason.DRIFT_STORM, detail) for d in candidates]
        candidates = []

    go: list[Drift] = []
    for d in candidates:
        n = recent_reverts.get(d.key, 0)
        if not sync and is_fight(n, env.brakes):
            detail = (f"reverted {n} times within {_dur(env.brakes.fight_window)}; "
                      "something else keeps changing it: left alone")
            brakes.append(BrakeEvent(Brake.FIGHT, detail, d.key))
            kept.append(_skip(d, SkipReason.FIGHT, detail))
        else:
            go.append(d)

    if dry:
        return Plan(revert=(), would_revert=tuple(_skip(d, SkipReason.DRY_RUN, "would revert") for d in go),
                    kept=tuple(kept), brakes=tuple(brakes))

    limit = env.brakes.max_reverts_per_cycle
    if not sync and len(go) > limit:
        detail = f"{len(go)} reverts due, at most {limit} per cycle; the rest wait for the next cycle"
        brakes.append(BrakeEvent(Brake.REVERT_LIMIT, detail))
        kept += [_skip(d, SkipReason.REVERT_LIMIT, detail) for d in go[limit:]]
        go = go[:limit]
    return Plan(revert=tuple(go), would_revert=(), kept=tuple(kept), brakes=tuple(brakes))


def _prune_over_limit(env: EnvironmentSettings, counts: EnvCounts, prunes: Sequence[Drift]) -> str | None:
    """Why the environment's prune is held, or None. Counted over every orphan of the environment
    (at least those in this pass), so a pass cut by the revert budget or a one-object watch event
    never fits under a limit the whole would cross."""
    limit = env.kubernetes.prune_max_fraction if env.kubernetes is not None else 0.0
    orphaned = max(counts.orphaned, len(prunes))
    fraction = orphaned / (counts.declared + orphaned)
    if fraction <= limit:
        return None
    names = ", ".join(str(d.key) for d in prunes[:5]) + (f" and {len(prunes) - 5} more" if len(prunes) > 5 else "")
    return (f"{orphaned} of {counts.declared + orphaned} managed objects are no longer declared "
            f"({fraction:.0%}, above prune_max_fraction {limit:.0%}): none deleted (would go: {names}); "
            "to confirm, raise prune_max_fraction for this environment, or declare them again")


def skip_reason(d: Drift) -> SkipReason | None:
    """The closed reason code of a skipped drift planned here (None for others)."""
    if d.action is not Action.SKIPPED or not d.reason:
        return None
    try:
        return SkipReason(d.reason.partition(":")[0])
    except ValueError:
        return None


def _note(d: Drift, em: EffectiveMode) -> Drift:
    note = em.note
    if d.drift is DriftKind.UNMANAGED and em.enforces:
        note = "unmanaged: report only"
    return replace(d, action=Action.REPORTED, reason=note or d.reason)


def _skip(d: Drift, reason: SkipReason, detail: str) -> Drift:
    return replace(d, action=Action.SKIPPED, reason=f"{reason}: {detail}")


def _dur(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
