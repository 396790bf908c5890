"""What revert (apply.py, prune.py) needs of the target: a narrow seam, so neither imports target.py
(which imports them) and the package has no import cycle."""

from __future__ import annotations

from typing import Protocol

from ...config import EnvironmentSettings, KubernetesEnvSettings
from ...model import DesiredObject, DesiredState
from .client import KubeClient
from .compare import Planned
from .discovery import Discovery


class ClusterAccess(Protocol):
    """KubernetesTarget as apply and prune see it."""

    async def client(self) -> KubeClient: ...

    async def discovery(self) -> Discovery: ...

    async def plan(self, env: EnvironmentSettings, desired: DesiredState
                   ) -> tuple[list[Planned], list[str], list[DesiredObject]]: ...

    def settings(self, env: EnvironmentSettings) -> KubernetesEnvSettings: ...
