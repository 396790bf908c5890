"""Safety brakes, pure: drift storm, fight detection, revert budget, empty desired state.

Each brake turns would-be reverts into skips with a reason; the engine records and alerts them.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..config import BrakeSettings
from ..model import ResourceKey


class Brake(StrEnum):
    """Label values for ``ReportListener.safety_brake`` and the audit trail."""

    DRIFT_STORM = "drift_storm"
    FIGHT = "fight"
    REVERT_LIMIT = "revert_limit"
    EMPTY_DESIRED = "empty_desired_state"
    PRUNE_LIMIT = "prune_limit"


def is_storm(drifting: int, objects: int, settings: BrakeSettings) -> bool:
    """More than ``storm_fraction`` of the environment's objects drift at once, and at least
    ``storm_min_objects`` of them: a bad commit or a restored backup looks like this, a
    hand edit does not."""
    if drifting < settings.storm_min_objects:
        return False
    # A pass may see drifts before the objects are counted (objects=0): count the drifting ones then.
    return drifting > settings.storm_fraction * max(objects, drifting)


def is_fight(recent_reverts: int, settings: BrakeSettings) -> bool:
    """At most ``fight_max_reverts`` reverts of one object per ``fight_window``; the next one is
    refused: something else (a controller, an operator's loop) keeps changing it back."""
    return recent_reverts >= settings.fight_max_reverts


def desired_version(declared: Mapping[str, Any]) -> str:
    """Identifies what Git declares for one object, so that a new declaration is told from a fight."""
    return hashlib.sha256(json.dumps(declared, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RevertHistory:
    """When each object was last reverted, kept only as long as the widest fight window needs.

    In memory, seeded from the audit trail at start so a restart does not reset the fight count.
    Reverts count per version of the object's declaration (``desired_version``): when Git declares
    the object anew, applying it is a deploy, not someone fighting driftd, so the count starts again
    (else a few pushes to an enforce environment within ``fight_window`` would be held as a fight).
    Seeded reverts have no version and count against whatever is declared next.
    """

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._times: dict[ResourceKey, deque[datetime]] = {}
        self._versions: dict[ResourceKey, str] = {}

    def _other_version(self, key: ResourceKey, version: str | None) -> bool:
        held = self._versions.get(key)
        return version is not None and held is not None and held != version

    def record(self, key: ResourceKey, at: datetime, version: str | None = None) -> None:
        if self._other_version(key, version):
            self._times.pop(key, None)
        if version is not None:
            self._versions[key] = version
        self._times.setdefault(key, deque()).append(at)

    def seed(self, items: Iterable[tuple[ResourceKey, datetime]]) -> None:
        for key, at in sorted(items, key=lambda x: x[1]):
            self.record(key, at)

    def count(self, key: ResourceKey, now: datetime, window: float, version: str | None = None) -> int:
        q = self._times.get(key)
        if not q or self._other_version(key, version):
            return 0
        edge = now - timedelta(seconds=max(window, self.horizon))
        while q and q[0] < edge:
            q.popleft()
        if not q:
            del self._times[key]
            self._versions.pop(key, None)
            return 0
        since = now - timedelta(seconds=window)
        return sum(1 for t in q if t >= since)

    def counts(self, keys: Iterable[ResourceKey], now: datetime, window: float,
               versions: Mapping[ResourceKey, str] | None = None) -> dict[ResourceKey, int]:
        v = versions or {}
        return {k: n for k in keys if (n := self.count(k, now, window, v.get(k)))}
