"""Seams between the engine and what it composes. Targets implement these structurally (no import needed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..config import EnvironmentSettings
from ..model import ClusterInfo, DesiredState, Drift, EnvironmentReport, ResourceKey, TargetKind, TargetResult
from ..policy.images import ImageFinding
from ..policy.leases import LeaseKind, LeaseRecord


class Target(Protocol):
    """A live system an environment is compared with: one cluster, or one AWS account/region."""

    kind: TargetKind

    async def check(self, env: EnvironmentSettings, desired: DesiredState, *,
                    inventory: frozenset[ResourceKey]) -> TargetResult:
        """Compare. ``inventory`` holds the keys declared at the last checked revision (for ``orphaned``).

        Must never report ``missing``/``orphaned`` from a live view it failed to read: such objects go
        to ``TargetResult.errors`` instead.
        """
        ...

    async def revert(self, env: EnvironmentSettings, desired: DesiredState, drifts: Sequence[Drift], *,
                     dry_run: bool = False) -> tuple[Drift, ...]:
        """Bring each drift back to Git. Returns the drifts with ``action``/``reason`` set
        (reverted, revert_failed, skipped). One failure never stops the others."""
        ...

    async def check_objects(self, env: EnvironmentSettings, desired: DesiredState, keys: frozenset[ResourceKey],
                            *, inventory: frozenset[ResourceKey]) -> TargetResult:
        """``check`` restricted to ``keys`` (declared, inventoried or unmanaged ones): drifts only for
        them, ``resources`` counts only them. Used to re-evaluate what an event touched."""
        ...

    async def watch(self, env: EnvironmentSettings, desired: DesiredState, on_change: Callable[[ResourceKey], None],
                    *, task_status: Any = ...) -> None:
        """Push the live view: until cancelled, call ``on_change(key)`` (on the event loop; it must not
        block) for every live object of the environment added, changed or deleted. Started with
        ``TaskGroup.start``: ``task_status.started()`` once watching. A target that cannot push (AWS:
        no change feed) starts and returns at once; the daemon then relies on its periodic ``check``."""
        ...

    async def aclose(self) -> None: ...


class ClusterInfoTarget(Protocol):
    """A cluster's target as the pool sees it beside ``Target``: what Helm renders against (version
    and served API versions), and the claims of an environment that failed to load withdrawn."""

    async def cluster_info(self) -> ClusterInfo: ...

    def withdraw(self, env: str) -> None: ...


class ReportListener(Protocol):
    """Told about every finished check of an environment (alerting, metrics). Must not raise."""

    async def environment_checked(self, env: EnvironmentSettings, report: EnvironmentReport) -> None: ...

    async def safety_brake(self, env: EnvironmentSettings, brake: str, detail: str, *,
                           key: ResourceKey | None = None) -> None:
        """A safety brake engaged (``brake`` is ``drift_storm``, ``fight`` or ``revert_limit``)."""
        ...


class ImageFindingListener(Protocol):
    """Told about every image poll of an environment (``[[environments.images]]``). Must not raise.

    ``findings`` holds every finding of the poll, one or more per policy (``up_to_date`` included, so
    a listener can resolve what no longer holds; ``error`` means the policy could not be read this time:
    what it cannot see is not resolved). ``ImageFinding.alerting`` says which deserve an alert, in
    alert and enforce modes only: the daemon calls this after every poll, observe mode included.
    """

    async def image_findings(self, env: EnvironmentSettings, findings: Sequence[ImageFinding]) -> None: ...


class StatusView(Protocol):
    """The daemon's in-process view of every environment, read by the HTTP API and readiness probe."""

    def reports(self) -> Sequence[EnvironmentReport]: ...

    def ready(self) -> bool:
        """Config loaded and every environment checked at least once (successfully or not)."""
        ...


class LeaseStore(Protocol):
    """Where replicas' leases live (``coordination.k8s.io`` Leases of one group in one namespace:
    ``driftd.targets.kubernetes.leases``). Writes are compare-and-swap on ``LeaseRecord.version``:
    losing a race is an answer (None), not an error. Other failures raise ``DriftdError``."""

    async def list(self) -> Sequence[LeaseRecord]: ...

    async def create(self, kind: LeaseKind, subject: str, *, holder: str, duration: float,
                     annotations: Mapping[str, str]) -> LeaseRecord | None:
        """None: it exists already (someone else created it first)."""
        ...

    async def update(self, lease: LeaseRecord, *, holder: str, duration: float,
                     annotations: Mapping[str, str] | None = None) -> LeaseRecord | None:
        """Write ``lease`` as of ``lease.version``; None: it changed meanwhile. ``annotations`` None keeps them."""
        ...

    async def aclose(self) -> None: ...


class ShardListener(Protocol):
    """Told by the coordinator when this replica gains or gives up an environment (the daemon)."""

    async def acquired(self, env: str, handover: Mapping[str, str]) -> None:
        """The environment's lease is ours: start acting. ``handover`` is what the previous holder
        published with ``handover_state`` (empty for a first holder)."""
        ...

    async def released(self, env: str, *, lost: bool) -> Mapping[str, str]:
        """Stop acting on ``env``; return only once nothing acts on it any more (in-flight reverts recorded),
        with the final handover state (published on the lease as it is released). ``lost``: the lease
        could not be renewed in time (another replica may take it now; the state is not published)."""
        ...

    def handover_state(self, env: str) -> Mapping[str, str]:
        """Published on the environment's lease at every renewal, for whoever holds it next (the open
        alerts with their startsAt). Small: Kubernetes caps an object's annotations at 256 KiB."""
        ...
