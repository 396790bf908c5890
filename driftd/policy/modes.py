"""The one place that decides an object's mode: ``decide_mode``.

Inputs: the environment's mode and enforce windows, the object's ``driftd.io/mode`` override (from
a Kubernetes annotation or AWS ``Metadata``, parsed here case-insensitively), ``dry_run``,
break-glass pauses, and who asked for the pass (``run``/``check`` or an operator's ``sync``).
Targets, the plan, the report and alerting all take their mode from here, so ``Observe`` or
``DISABLED`` mean the same to every one of them.

Pure: the caller passes ``now``, so tests need no clock and no cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from ..config import EnforceWindow, EnvironmentSettings
from ..model import Mode, ObjectMode, PassKind, Pause, ResourceKey
from .cron import CronSchedule, window_open

MODE_ANNOTATION = "driftd.io/mode"


class ModeSource(StrEnum):
    """Why an object ended up in its mode (recorded as the reason)."""

    ENVIRONMENT = "environment"
    OBJECT = "object annotation"
    OUTSIDE_WINDOW = "outside enforce window"
    PAUSED = "paused"
    SYNC = "sync"


@dataclass(frozen=True)
class EffectiveMode:
    mode: Mode | None  # None: the object is disabled (driftd leaves it out entirely)
    dry_run: bool
    source: ModeSource
    pause: Pause | None = None

    @property
    def enforces(self) -> bool:
        return self.mode is Mode.ENFORCE

    @property
    def note(self) -> str | None:
        """A short human reason when the mode is not simply the environment's."""
        if self.source is ModeSource.OUTSIDE_WINDOW:
            return "outside enforce window"
        if self.source is ModeSource.OBJECT:
            return f"{MODE_ANNOTATION}={self.mode or ObjectMode.DISABLED}"
        if self.source is ModeSource.PAUSED and self.pause is not None:
            p = self.pause
            return f"paused until {p.until.isoformat().replace('+00:00', 'Z')} by {p.by}: {p.reason}"
        return None


class InvalidObjectMode(ValueError):
    """A ``driftd.io/mode`` value that is none of observe, alert, enforce, disabled."""

    def __init__(self, value: object) -> None:
        super().__init__(f"{MODE_ANNOTATION} must be one of {', '.join(m.value for m in ObjectMode)} "
                         f"(any case), found {value!r}")


def parse_object_mode(value: Any) -> ObjectMode | None:
    """An annotation value -> ObjectMode; None when absent. Case-insensitive (``Observe``, ``DISABLED``).
    Raises InvalidObjectMode for anything else: a typo must not silently fall back to enforcing."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidObjectMode(value)
    try:
        return ObjectMode(value.strip().lower())
    except ValueError:
        raise InvalidObjectMode(value) from None


def object_mode_from_body(body: Mapping[str, Any]) -> ObjectMode | None:
    """``metadata.annotations["driftd.io/mode"]`` of a Kubernetes manifest (or live object)."""
    meta = body.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, Mapping) else None
    return parse_object_mode(ann.get(MODE_ANNOTATION)) if isinstance(ann, Mapping) else None


def object_mode_from_metadata(metadata: Mapping[str, Any]) -> ObjectMode | None:
    """AWS declarations: ``Metadata: {driftd.io/mode: observe}`` (or ``Metadata.driftd.mode``)."""
    v = metadata.get(MODE_ANNOTATION)
    if v is None:
        d = metadata.get("driftd")
        v = d.get("mode") if isinstance(d, Mapping) else None
    return parse_object_mode(v)


def is_disabled(body: Mapping[str, Any]) -> bool:
    """A live or desired Kubernetes object annotated ``disabled`` (any case); an invalid value is not."""
    try:
        return object_mode_from_body(body) is ObjectMode.DISABLED
    except InvalidObjectMode:
        return False


@lru_cache(maxsize=256)
def _schedule(expr: str) -> CronSchedule:
    return CronSchedule.parse(expr)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_enforce_window(windows: tuple[EnforceWindow, ...], now: datetime) -> bool:
    """No windows configured means always. An unparsable window never opens (config validation
    reports it; failing closed keeps a typo from enforcing around the clock)."""
    if not windows:
        return True
    for w in windows:
        try:
            if window_open(_schedule(w.schedule), w.duration, _zone(w.timezone), now):
                return True
        except (ValueError, KeyError):
            continue
    return False


def holding(pauses: Iterable[Pause], env: str, key: ResourceKey | None, now: datetime) -> Pause | None:
    """The pause that holds ``key`` (None: the environment as a whole) now, if any; the environment-wide
    one first, then the longest."""
    found = [p for p in pauses if p.environment == env and p.holds(now) and p.covers(key)]
    return min(found, key=lambda p: (bool(p.kind), -p.until.timestamp())) if found else None


def decide_mode(env: EnvironmentSettings, now: datetime, *, override: ObjectMode | None = None,
                key: ResourceKey | None = None, pass_kind: PassKind = PassKind.RUN,
                pauses: Iterable[Pause] = (), dry_run: bool | None = None) -> EffectiveMode:
    """The mode of one object (``key``/``override``) or, without them, of the environment.

    1. ``disabled`` (the object's override): left out entirely, whoever asks.
    2. a pause holding it: ``observe`` (break-glass beats everything but ``disabled``, ``sync`` included:
       resume first).
    3. ``sync`` (an operator asked): ``enforce`` regardless of the environment's mode and windows, except
       an object explicitly ``observe``.
    4. ``run``/``check``: the override, else the environment's mode; ``enforce`` outside every enforce
       window behaves as ``alert``.

    ``dry_run`` (the CLI's ``--dry-run``) replaces the environment's ``dry_run`` when given.
    """
    dry = env.dry_run if dry_run is None else dry_run
    if override is ObjectMode.DISABLED:
        return EffectiveMode(None, dry, ModeSource.OBJECT)
    pause = holding(pauses, env.name, key, now)
    if pause is not None:
        return EffectiveMode(Mode.OBSERVE, dry, ModeSource.PAUSED, pause)
    if pass_kind is PassKind.SYNC:
        if override is ObjectMode.OBSERVE:
            return EffectiveMode(Mode.OBSERVE, dry, ModeSource.OBJECT)
        return EffectiveMode(Mode.ENFORCE, dry, ModeSource.SYNC)
    mode, source = (env.mode, ModeSource.ENVIRONMENT) if override is None else (Mode(override.value),
                                                                                ModeSource.OBJECT)
    if mode is Mode.ENFORCE and not in_enforce_window(env.enforce_windows, now):
        return EffectiveMode(Mode.ALERT, dry, ModeSource.OUTSIDE_WINDOW)
    return EffectiveMode(mode, dry, source)


def environment_mode(env: EnvironmentSettings, now: datetime, pauses: Iterable[Pause] = ()) -> EffectiveMode:
    """The environment's own mode now (objects without an override): what the report and metrics show."""
    return decide_mode(env, now, pauses=pauses)
