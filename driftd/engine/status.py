"""The daemon's in-process view of every environment (implements protocols.StatusView)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..model import EnvironmentReport, Status
from .reconciler import EnvRuntime


class EngineStatus:
    """Reads the runtimes the daemon keeps; ``checked`` reports share the shape of ``driftd check``."""

    def __init__(self, runtimes: Callable[[], Sequence[EnvRuntime]]) -> None:
        self._runtimes = runtimes
        self.config_loaded = False

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
        """Config loaded and every environment checked at least once (successfully or not)."""
        return self.config_loaded and all(rt.last_report is not None for rt in self._runtimes())
