"""Builders shared by the alerting/server tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from driftd.config import AlertmanagerSettings, DaemonSettings, EnvironmentSettings
from driftd.model import (
    Action,
    Change,
    Drift,
    DriftKind,
    EnvironmentReport,
    Mode,
    ResourceKey,
    Severity,
    Status,
    TargetKind,
)


def env(name: str | None = None, mode: Mode = Mode.ALERT, severity: Severity = Severity.WARNING) -> EnvironmentSettings:
    return EnvironmentSettings(name=name or f"t-{uuid.uuid4().hex[:8]}", repository="r", branch="main",
                               mode=mode, severity=severity, interval=5.0)


def key(name: str = "web", kind: str = "Deployment", namespace: str = "shop",
        target: TargetKind = TargetKind.KUBERNETES) -> ResourceKey:
    return ResourceKey(target, kind, name, namespace, "apps/v1" if target is TargetKind.KUBERNETES else "")


def drift(name: str = "web", *, kind: str = "Deployment", namespace: str = "shop", action: Action = Action.REPORTED,
          changes: tuple[Change, ...] | None = None, target: TargetKind = TargetKind.KUBERNETES,
          mode: Mode | None = None) -> Drift:
    if changes is None:
        changes = (Change("/spec/replicas", 2, 5, changed_by="kubectl-edit"),)
    return Drift(key(name, kind, namespace, target), DriftKind.MODIFIED, changes, changed_by="kubectl-edit",
                 changed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), action=action, mode=mode)


def report(e: EnvironmentSettings, *drifts: Drift, status: Status | None = None, error: str | None = None,
           revision: str = "abc123") -> EnvironmentReport:
    st = status or (Status.DRIFTED if drifts else Status.IN_SYNC)
    return EnvironmentReport(e.name, revision, st, error=error, resources=10, drifts=tuple(drifts), mode=e.mode,
                             checked_at=datetime.now(UTC))


def settings(urls: tuple[str, ...], resend: float = 60.0, grace: float = 0.0) -> AlertmanagerSettings:
    return AlertmanagerSettings(urls=urls, resend_interval=resend, error_grace=grace, timeout=2.0,
                                external_url="http://driftd.test:9717")


def daemon(state_dir: Path, listen: str = "127.0.0.1:9717") -> DaemonSettings:
    return DaemonSettings(state_dir=state_dir, listen=listen)


class FakeStatus:
    """What the server and the systemd supervisor read from the daemon: reports and readiness, set by the test."""

    def __init__(self) -> None:
        self.is_ready = False
        self.items: list[EnvironmentReport] = []

    def reports(self) -> list[EnvironmentReport]:
        return self.items

    def ready(self) -> bool:
        return self.is_ready
