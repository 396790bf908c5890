"""The daemon's in-process view of every environment (implements protocols.StatusView)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..model import EnvironmentReport, Status
from .coordination import Coordinator
from .reconciler import EnvRuntime


class EngineStatus:
    """Reads the runtimes the daemon keeps; ``checked`` reports share the shape of ``driftd check``."""

    def __init__(self, runtimes: Callable[[], Sequence[EnvRuntime]]) -> None:
        self._runtimes = runtimes
        self.config_loaded = False
        # Replicas sharing environments ([coordination]): the coordinator, when there is one. Each replica
        # reports the environments it holds; readiness also waits for its first look at the leases.
        self.coordinator: Coordinator | None = None

    def reports(self) -> Sequence[EnvironmentReport]:
        out = []
        for rt in sorted(self._runtimes(), key=lambda r: r.settings.name):
            if rt.last_report is not None:
                out.append(rt.last_report)
            else:
                out.append(EnvironmentReport(rt.settings.name, None, Status.ERROR, error="not checked yet",
                                             mode=rt.settings.mode))
        return out

    def ready(self) -> bool:
        """Config loaded and every environment (this replica holds) checked at least once (successfully or
        not). During a handover an environment just taken over counts only once checked here."""
        if self.coordinator is not None and not self.coordinator.ready():
            return False
        return self.config_loaded and all(rt.last_report is not None for rt in self._runtimes())

    def replicas(self) -> Mapping[str, object] | None:
        """Which replica holds which environment (None: a single replica, no ``[coordination]``)."""
        return None if self.coordinator is None else self.coordinator.snapshot()
