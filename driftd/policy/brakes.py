"""Safety brakes, pure: drift storm, fight detection, revert budget, empty desired state.

Each brake turns would-be reverts into skips with a reason; the engine records and alerts them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from ..config import BrakeSettings
from ..model import ResourceKey


class Brake(StrEnum):
    """Label values for ``ReportListener.safety_brake`` and the audit trail."""

    DRIFT_STORM = "drift_storm"
    FIGHT = "fight"
    REVERT_LIMIT = "revert_limit"
    EMPTY_DESIRED = "empty_desired_state"


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


class RevertHistory:
    """When each object was last reverted, kept only as long as the widest fight window needs.

    In memory, seeded from the audit trail at start so a restart does not reset the fight count.
    """

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._times: dict[ResourceKey, deque[datetime]] = {}

    def record(self, key: ResourceKey, at: datetime) -> None:
        self._times.setdefault(key, deque()).append(at)

    def seed(self, items: Iterable[tuple[ResourceKey, datetime]]) -> None:
        for key, at in sorted(items, key=lambda x: x[1]):
            self.record(key, at)

    def count(self, key: ResourceKey, now: datetime, window: float) -> int:
        q = self._times.get(key)
        if not q:
            return 0
        edge = now - timedelta(seconds=max(window, self.horizon))
        while q and q[0] < edge:
            q.popleft()
        if not q:
            del self._times[key]
            return 0
        since = now - timedelta(seconds=window)
        return sum(1 for t in q if t >= since)

    def counts(self, keys: Iterable[ResourceKey], now: datetime, window: float) -> dict[ResourceKey, int]:
        return {k: n for k in keys if (n := self.count(k, now, window))}
