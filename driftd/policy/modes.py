"""The effective mode for one object: environment mode, per-object override, enforce windows, dry run.

Pure: the caller passes ``now`` and the object's override (read from the ``driftd.io/mode``
annotation or AWS ``Metadata``), so tests need no clock and no cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from ..config import EnforceWindow, EnvironmentSettings
from ..model import Mode, ObjectMode
from .cron import CronSchedule, window_open

MODE_ANNOTATION = "driftd.io/mode"


class ModeSource(StrEnum):
    """Why an object ended up in its mode (recorded as the reason)."""

    ENVIRONMENT = "environment"
    OBJECT = "object annotation"
    OUTSIDE_WINDOW = "outside enforce window"


@dataclass(frozen=True)
class EffectiveMode:
    mode: Mode | None  # None: the object is disabled (driftd leaves it out entirely)
    dry_run: bool
    source: ModeSource

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
        return None


def parse_object_mode(value: Any) -> ObjectMode | None:
    """An annotation value -> ObjectMode, or None when absent or not understood (then the env mode applies)."""
    if not isinstance(value, str):
        return None
    try:
        return ObjectMode(value.strip().lower())
    except ValueError:
        return None


def object_mode_from_body(body: Mapping[str, Any]) -> ObjectMode | None:
    """``metadata.annotations["driftd.io/mode"]`` of a Kubernetes manifest."""
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


def environment_mode(env: EnvironmentSettings, now: datetime) -> EffectiveMode:
    """The mode of objects without an override: enforce outside every window behaves as alert."""
    if env.mode is Mode.ENFORCE and not in_enforce_window(env.enforce_windows, now):
        return EffectiveMode(Mode.ALERT, env.dry_run, ModeSource.OUTSIDE_WINDOW)
    return EffectiveMode(env.mode, env.dry_run, ModeSource.ENVIRONMENT)


def effective_mode(env: EnvironmentSettings, override: ObjectMode | None, now: datetime, *,
                   env_mode: EffectiveMode | None = None) -> EffectiveMode:
    """``env_mode`` may be passed in when computed once per pass (windows cost a little)."""
    base = env_mode or environment_mode(env, now)
    if override is None:
        return base
    if override is ObjectMode.DISABLED:
        return EffectiveMode(None, env.dry_run, ModeSource.OBJECT)
    mode = Mode(override.value)
    if mode is Mode.ENFORCE and not in_enforce_window(env.enforce_windows, now):
        return EffectiveMode(Mode.ALERT, env.dry_run, ModeSource.OUTSIDE_WINDOW)
    return EffectiveMode(mode, env.dry_run, ModeSource.OBJECT)
