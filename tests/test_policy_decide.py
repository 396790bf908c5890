"""Modes, enforce windows, safety brakes and the action plan: pure, no servers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from driftd.config import BrakeSettings, EnforceWindow, EnvironmentSettings, KubernetesEnvSettings
from driftd.model import Action, Drift, DriftKind, Mode, ObjectMode, PassKind, Pause, ResourceKey, TargetKind
from driftd.policy.brakes import Brake, RevertHistory, is_fight, is_storm
from driftd.policy.decide import EnvCounts, SkipReason, plan, skip_reason
from driftd.policy.modes import (
    InvalidObjectMode,
    ModeSource,
    decide_mode,
    object_mode_from_body,
    object_mode_from_metadata,
)

NOW = datetime(2024, 6, 12, 10, 0, tzinfo=UTC)  # a Wednesday


def env(mode: Mode = Mode.ENFORCE, **kw: object) -> EnvironmentSettings:
    return EnvironmentSettings(name="prod", repository="r", branch="main", mode=mode,
                               kubernetes=KubernetesEnvSettings(cluster="c"), **kw)  # type: ignore[arg-type]


def key(name: str, kind: str = "Deployment") -> ResourceKey:
    return ResourceKey(TargetKind.KUBERNETES, kind, name, "default", "apps/v1")


def drift(name: str, kind: DriftKind = DriftKind.MODIFIED) -> Drift:
    return Drift(key(name), kind)


COUNTS = EnvCounts(objects=100, drifting=1)


# --- modes -------------------------------------------------------------------------------------

def test_object_annotation_wins_over_environment() -> None:
    e = env(Mode.ENFORCE)
    em = decide_mode(e, NOW, override=ObjectMode.OBSERVE)
    assert em.mode is Mode.OBSERVE
    assert em.source is ModeSource.OBJECT
    assert decide_mode(e, NOW, override=ObjectMode.DISABLED).mode is None
    assert decide_mode(env(Mode.OBSERVE), NOW, override=ObjectMode.ENFORCE).mode is Mode.ENFORCE


def test_enforce_outside_window_behaves_as_alert() -> None:
    w = EnforceWindow(schedule="0 9 * * mon-fri", duration=8 * 3600, timezone="Europe/Paris")
    e = env(Mode.ENFORCE, enforce_windows=(w,))
    assert decide_mode(e, NOW, override=None).mode is Mode.ENFORCE  # 12:00 Paris
    night = NOW.replace(hour=22)
    em = decide_mode(e, night, override=None)
    assert em.mode is Mode.ALERT
    assert em.source is ModeSource.OUTSIDE_WINDOW
    # An object asking for enforce is bound by the window too.
    assert decide_mode(env(Mode.ALERT, enforce_windows=(w,)), night, override=ObjectMode.ENFORCE).mode is Mode.ALERT


def test_broken_window_fails_closed() -> None:
    e = env(Mode.ENFORCE, enforce_windows=(EnforceWindow(schedule="99 * * * *", duration=3600),))
    assert decide_mode(e, NOW, override=None).mode is Mode.ALERT


def test_mode_from_annotations_and_metadata() -> None:
    assert object_mode_from_body({"metadata": {"annotations": {"driftd.io/mode": "Observe"}}}) is ObjectMode.OBSERVE
    assert object_mode_from_body({"metadata": {"annotations": {"driftd.io/mode": "DISABLED"}}}) is ObjectMode.DISABLED
    with pytest.raises(InvalidObjectMode, match="found 'bogus'"):
        object_mode_from_body({"metadata": {"annotations": {"driftd.io/mode": "bogus"}}})
    assert object_mode_from_body({"metadata": {}}) is None
    assert object_mode_from_metadata({"driftd": {"mode": "disabled"}}) is ObjectMode.DISABLED
    assert object_mode_from_metadata({"driftd.io/mode": "alert"}) is ObjectMode.ALERT


def test_one_mode_function_for_every_pass_kind_and_annotation() -> None:
    """The table the targets, the plan and alerting all share (issue: three parsers disagreed)."""
    e = env(Mode.ALERT)
    cases = {  # override -> (run, sync)
        None: (Mode.ALERT, Mode.ENFORCE),
        ObjectMode.OBSERVE: (Mode.OBSERVE, Mode.OBSERVE),
        ObjectMode.ALERT: (Mode.ALERT, Mode.ENFORCE),  # sync reverts alert objects (an operator asked)
        ObjectMode.ENFORCE: (Mode.ENFORCE, Mode.ENFORCE),
        ObjectMode.DISABLED: (None, None),
    }
    for ov, (run, sync) in cases.items():
        assert decide_mode(e, NOW, override=ov).mode is run, ov
        assert decide_mode(e, NOW, override=ov, pass_kind=PassKind.CHECK).mode is run, ov
        assert decide_mode(e, NOW, override=ov, pass_kind=PassKind.SYNC).mode is sync, ov
    assert decide_mode(e, NOW, dry_run=True).dry_run is True
    assert decide_mode(env(dry_run=True), NOW).dry_run is True
    assert decide_mode(env(dry_run=True), NOW, pass_kind=PassKind.SYNC, dry_run=False).dry_run is False


def test_pause_is_observe_until_it_expires() -> None:
    until = NOW + timedelta(hours=2)
    whole = Pause("prod", until, "incident 42", "alice")
    one = Pause("prod", until, "debugging", "bob", kind="deployment", namespace="default", name="a")
    other_env = Pause("staging", until, "x", "carol")
    e = env(Mode.ENFORCE)
    em = decide_mode(e, NOW, key=key("a"), pauses=[whole])
    assert (em.mode, em.source, em.pause) == (Mode.OBSERVE, ModeSource.PAUSED, whole)
    assert em.note is not None
    assert "incident 42" in em.note
    assert "alice" in em.note
    assert decide_mode(e, NOW, key=key("a"), pauses=[one]).mode is Mode.OBSERVE  # kind matched in any case
    assert decide_mode(e, NOW, key=key("b"), pauses=[one]).mode is Mode.ENFORCE
    assert decide_mode(e, NOW, key=key("a"), pauses=[other_env]).mode is Mode.ENFORCE
    assert decide_mode(e, until, key=key("a"), pauses=[whole]).mode is Mode.ENFORCE  # expired by itself
    # Break-glass holds sync too (resume first); disabled stays disabled.
    assert decide_mode(e, NOW, key=key("a"), pauses=[whole], pass_kind=PassKind.SYNC).mode is Mode.OBSERVE
    assert decide_mode(e, NOW, key=key("a"), pauses=[whole], override=ObjectMode.DISABLED).mode is None
    p = plan([drift("a"), drift("b")], e, NOW, counts=COUNTS, pauses=[one])
    assert [d.key.name for d in p.revert] == ["b"]
    assert p.kept[0].mode is Mode.OBSERVE
    assert p.kept[0].reason is not None
    assert p.kept[0].reason.startswith("paused until")


# --- brakes ------------------------------------------------------------------------------------

def test_storm_threshold() -> None:
    s = BrakeSettings(storm_fraction=0.5, storm_min_objects=5)
    assert not is_storm(4, 4, s)  # everything drifts, but too few objects to call it a storm
    assert not is_storm(5, 10, s)  # exactly half is not more than half
    assert is_storm(6, 10, s)
    assert is_storm(5, 0, s)


def test_fight_and_revert_history_window() -> None:
    s = BrakeSettings(fight_max_reverts=3, fight_window=600)
    h = RevertHistory(horizon=600)
    k = key("web")
    for i in range(3):
        assert not is_fight(h.count(k, NOW, 600), s)
        h.record(k, NOW - timedelta(seconds=500 - i))
    assert is_fight(h.count(k, NOW, 600), s)
    assert h.count(k, NOW + timedelta(seconds=200), 600) == 0  # aged out
    assert h.counts([k, key("other")], NOW, 600) == {}


# --- plan --------------------------------------------------------------------------------------

def test_alert_and_observe_only_report() -> None:
    for m in (Mode.ALERT, Mode.OBSERVE):
        p = plan([drift("a")], env(m), NOW, counts=COUNTS)
        assert p.revert == ()
        assert len(p.kept) == 1
        assert p.kept[0].action is Action.REPORTED
        assert p.kept[0].mode is m


def test_enforce_reverts_and_observe_annotation_wins() -> None:
    p = plan([drift("a"), drift("b")], env(), NOW, counts=COUNTS, overrides={key("b"): ObjectMode.OBSERVE})
    assert [d.key.name for d in p.revert] == ["a"]
    assert p.kept[0].key.name == "b"
    assert p.kept[0].mode is Mode.OBSERVE
    assert p.kept[0].reason == "driftd.io/mode=observe"


def test_disabled_objects_are_left_out() -> None:
    p = plan([drift("a")], env(), NOW, counts=COUNTS, overrides={key("a"): ObjectMode.DISABLED})
    assert p.drifts == ()


def test_dry_run_would_revert() -> None:
    p = plan([drift("a")], env(dry_run=True), NOW, counts=COUNTS)
    assert p.revert == ()
    assert p.would_revert[0].action is Action.SKIPPED
    assert skip_reason(p.would_revert[0]) is SkipReason.DRY_RUN


def test_unmanaged_never_reverted_and_orphans_need_prune() -> None:
    ds = [drift("u", DriftKind.UNMANAGED), drift("o", DriftKind.ORPHANED), drift("m", DriftKind.MISSING)]
    p = plan(ds, env(), NOW, counts=COUNTS)
    assert [d.key.name for d in p.revert] == ["m"]
    reasons = {d.key.name: skip_reason(d) for d in p.kept}
    assert reasons == {"u": None, "o": SkipReason.PRUNE_DISABLED}
    p2 = plan(ds, env(), NOW, counts=EnvCounts(100, 2, orphaned=1, declared=100), prune_allowed=True)
    assert sorted(d.key.name for d in p2.revert) == ["m", "o"]


def test_drift_storm_holds_the_environment() -> None:
    ds = [drift(f"d{i}") for i in range(6)]
    p = plan(ds, env(), NOW, counts=EnvCounts(objects=10, drifting=6))
    assert p.revert == ()
    assert all(skip_reason(d) is SkipReason.DRIFT_STORM for d in p.kept)
    assert [b.brake for b in p.brakes] == [Brake.DRIFT_STORM]
    assert "6 of 10" in p.brakes[0].detail
    # An alert environment in a storm raises no brake: nothing would have been reverted.
    assert plan(ds, env(Mode.ALERT), NOW, counts=EnvCounts(10, 6)).brakes == ()
    # sync is an explicit operator action: no storm brake.
    assert len(plan(ds, env(), NOW, counts=EnvCounts(10, 6), pass_kind=PassKind.SYNC).revert) == 6


def test_fight_brake_per_object() -> None:
    p = plan([drift("a"), drift("b")], env(), NOW, counts=COUNTS, recent_reverts={key("a"): 3})
    assert [d.key.name for d in p.revert] == ["b"]
    assert skip_reason(p.kept[0]) is SkipReason.FIGHT
    assert p.brakes[0].brake is Brake.FIGHT
    assert p.brakes[0].key == key("a")


def test_revert_limit_per_cycle() -> None:
    e = env(brakes=BrakeSettings(max_reverts_per_cycle=2, storm_min_objects=100))
    p = plan([drift(n) for n in "cab"], e, NOW, counts=COUNTS)
    assert [d.key.name for d in p.revert] == ["a", "b"]  # stable order
    assert skip_reason(p.kept[0]) is SkipReason.REVERT_LIMIT
    assert p.kept[0].key.name == "c"
    assert p.brakes[0].brake is Brake.REVERT_LIMIT


def test_empty_desired_state_guard() -> None:
    p = plan([drift("o", DriftKind.ORPHANED)], env(), NOW, counts=COUNTS, desired_empty=True,
             prune_allowed=True, pass_kind=PassKind.SYNC)
    assert p.revert == ()
    assert skip_reason(p.kept[0]) is SkipReason.EMPTY_DESIRED
    assert p.brakes[0].brake is Brake.EMPTY_DESIRED


def test_sync_ignores_env_mode_but_not_observe_annotation() -> None:
    ds = [drift("a"), drift("b")]
    p = plan(ds, env(Mode.OBSERVE), NOW, counts=COUNTS, pass_kind=PassKind.SYNC,
             overrides={key("b"): ObjectMode.OBSERVE})
    assert [d.key.name for d in p.revert] == ["a"]
    p2 = plan(ds, env(Mode.OBSERVE), NOW, counts=COUNTS, pass_kind=PassKind.SYNC, dry_run=True)
    assert len(p2.would_revert) == 2


def test_plan_keeps_changes_and_attribution() -> None:
    d = replace(drift("a"), changed_by="kubectl-edit")
    p = plan([d], env(Mode.ALERT), NOW, counts=COUNTS)
    assert p.kept[0].changed_by == "kubectl-edit"


def _pruning_env(fraction: float = 0.25) -> EnvironmentSettings:
    return replace(env(), kubernetes=KubernetesEnvSettings(cluster="c", prune=True, prune_max_fraction=fraction))


def test_prune_limit_is_taken_over_the_environment_not_the_pass() -> None:
    """Issue 22 §1: 200 declared, 60 removed by one commit (30% > 25%). Neither the per-cycle cap nor a
    one-object event pass may fit a share of them under the limit."""
    e = _pruning_env()
    counts = EnvCounts(objects=140, drifting=60, orphaned=60, declared=140)
    orphans = [drift(f"cm{i:03}", DriftKind.ORPHANED) for i in range(60)]
    for batch in (orphans, orphans[:50], orphans[:1]):  # a full pass, a capped one, one watch event
        p = plan(batch, e, NOW, counts=counts, prune_allowed=True)
        assert p.revert == ()
        assert {skip_reason(d) for d in p.kept} == {SkipReason.PRUNE_LIMIT}
        assert [b.brake for b in p.brakes] == [Brake.PRUNE_LIMIT]
        assert "60 of 200 managed objects" in p.brakes[0].detail
        assert "(30%, above prune_max_fraction 25%)" in p.brakes[0].detail
    # sync is explicit, but not a confirmation of a mass delete.
    assert plan(orphans, e, NOW, counts=counts, prune_allowed=True, pass_kind=PassKind.SYNC).revert == ()
    # Other drifts of the environment are still reverted.
    p = plan([*orphans[:3], drift("web")], e, NOW, counts=counts, prune_allowed=True)
    assert [d.key.name for d in p.revert] == ["web"]
    # Raising the limit is the operator's confirmation; under it, everything goes (capped per cycle).
    assert len(plan(orphans, _pruning_env(0.3), NOW, counts=counts, prune_allowed=True).revert) == 50
    assert len(plan(orphans[:10], e, NOW, counts=EnvCounts(190, 10, orphaned=10, declared=190),
                    prune_allowed=True).revert) == 10
