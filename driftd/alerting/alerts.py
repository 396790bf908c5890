"""What driftd tells Alertmanager: alert names, labels and annotations built from reports. Pure.

Labels identify an alert (Alertmanager fingerprints them), so they hold only stable, bounded
values; everything that changes between checks (the changes, who made them) goes in annotations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from ..config import EnvironmentSettings
from ..model import Action, ChangeOp, Drift, EnvironmentReport, Mode, Pause, ResourceKey, Severity
from ..policy.images import FindingKind, ImageFinding
from ..policy.modes import environment_mode
from ..redact import redact_drift

MAX_DESCRIPTION = 2000  # Alertmanager keeps annotations in memory and receivers truncate anyway
MAX_VALUE = 200  # one rendered expected/actual value


class AlertName(StrEnum):
    DRIFT_DETECTED = "DriftDetected"
    DRIFT_REVERTED = "DriftReverted"
    ENVIRONMENT_ERROR = "DriftdEnvironmentError"
    SAFETY_BRAKE = "DriftdSafetyBrake"
    IMAGE_UPDATE_AVAILABLE = "DriftdImageUpdateAvailable"
    IMAGE_TAG_MOVED = "DriftdImageTagMoved"
    IMAGE_DIGEST_MISSING = "DriftdImageDigestMissing"
    IMAGE_WRITE_BACK_FAILED = "DriftdImageWriteBackFailed"
    PAUSED = "DriftdPaused"


# The image findings that alert (ImageFinding.alerting), and the alert each one opens.
IMAGE_ALERTS: Mapping[FindingKind, AlertName] = {
    FindingKind.UPDATE_AVAILABLE: AlertName.IMAGE_UPDATE_AVAILABLE,
    FindingKind.TAG_MOVED: AlertName.IMAGE_TAG_MOVED,
    FindingKind.DIGEST_MISSING: AlertName.IMAGE_DIGEST_MISSING,
    FindingKind.WRITE_BACK_FAILED: AlertName.IMAGE_WRITE_BACK_FAILED,
}
# Image alerts that are states (open while polls report them); a moved tag is an event.
IMAGE_STATES: tuple[AlertName, ...] = (AlertName.IMAGE_UPDATE_AVAILABLE, AlertName.IMAGE_DIGEST_MISSING,
                                       AlertName.IMAGE_WRITE_BACK_FAILED)


@dataclass(frozen=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def environment(self) -> str:
        return self.labels.get("environment", "")

    @property
    def fingerprint(self) -> str:
        """Stable identity: a hash of the labels, as Alertmanager identifies alerts."""
        raw = json.dumps(sorted(self.labels.items()), separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def object_url(base: str, env: str, key: ResourceKey) -> str:
    """driftd's HTTP API URL for one object (served by driftd.server)."""
    parts = [env, "objects", str(key.target), key.kind, key.namespace or "_", key.name]
    return base.rstrip("/") + "/api/v1/environments/" + "/".join(quote(p, safe="") for p in parts)


def drift_mode(env: EnvironmentSettings, drift: Drift) -> Mode:
    """The object's mode as the engine's plan stamped it (policy.modes.decide_mode: annotation, windows,
    pauses); the same function's answer for the environment when a drift never went through a plan."""
    if drift.mode is not None:
        return drift.mode
    return environment_mode(env, datetime.now(UTC)).mode or env.mode


def alerting(env: EnvironmentSettings, drift: Drift | None = None) -> bool:
    """Observe-mode environments (and observe, or paused, objects) send nothing."""
    if env.mode is Mode.OBSERVE:
        return False
    return drift is None or drift_mode(env, drift) is not Mode.OBSERVE


def _object_labels(key: ResourceKey) -> dict[str, str]:
    return {"target": str(key.target), "kind": key.kind, "namespace": key.namespace, "name": key.name}


def drift_alert(env: EnvironmentSettings, report: EnvironmentReport, drift: Drift, base_url: str) -> Alert:
    """DriftDetected for a drift that is (still) live, or DriftReverted when enforce put it back."""
    d = redact_drift(drift)
    reverted = d.action is Action.REVERTED
    name = AlertName.DRIFT_REVERTED if reverted else AlertName.DRIFT_DETECTED
    labels = {
        "alertname": str(name),
        "environment": env.name,
        **_object_labels(d.key),
        "drift": str(d.drift),
        "severity": str(Severity.INFO if reverted else env.severity),
        # The configured mode, not the object's effective one: labels make the alert's identity, and an
        # enforce window opening or closing must not end one alert and start another with a new startsAt.
        "mode": str(env.mode),
    }
    who = changed_by(d)
    obj = _obj(d.key)
    verb = "was reverted to Git" if reverted else f"drifted from Git ({d.drift})"
    summary = f"{obj} in {env.name} {verb}" + (f", changed by {who}" if who else "")
    annotations = {
        "summary": summary,
        "description": describe(d),
        "changed_by": who or "unknown",
        "revision": report.revision or "",
        "action": str(d.action),
        "object_mode": str(drift_mode(env, d)),
    }
    if d.changed_at:
        annotations["changed_at"] = d.changed_at.isoformat().replace("+00:00", "Z")
    if d.reason:
        annotations["reason"] = _clip(d.reason, 500)
    return Alert(labels, annotations, object_url(base_url, env.name, d.key))


def error_alert(env: EnvironmentSettings, report: EnvironmentReport, base_url: str) -> Alert:
    labels = {"alertname": str(AlertName.ENVIRONMENT_ERROR), "environment": env.name,
              "severity": str(env.severity), "mode": str(env.mode)}
    annotations = {
        "summary": f"driftd cannot check environment {env.name}",
        "description": _clip(report.error or "unknown error", MAX_DESCRIPTION),
        "revision": report.revision or "",
    }
    return Alert(labels, annotations, base_url.rstrip("/") + "/api/v1/environments/" + quote(env.name, safe=""))


def brake_alert(env: EnvironmentSettings, brake: str, detail: str, key: ResourceKey | None, base_url: str) -> Alert:
    labels = {"alertname": str(AlertName.SAFETY_BRAKE), "environment": env.name, "brake": brake,
              "severity": str(env.severity), "mode": str(env.mode)}
    url = base_url.rstrip("/") + "/api/v1/environments/" + quote(env.name, safe="")
    if key is not None:
        labels.update(_object_labels(key))
        url = object_url(base_url, env.name, key)
    what = f" on {_obj(key)}" if key is not None else ""
    annotations = {
        "summary": f"driftd safety brake {brake} engaged in {env.name}{what}: enforcement held",
        "description": _clip(detail, MAX_DESCRIPTION),
    }
    return Alert(labels, annotations, url)


def pause_alert(env: EnvironmentSettings, p: Pause, base_url: str) -> Alert:
    """Info while a break-glass pause holds: enforcement is off for it, somebody should know."""
    labels = {"alertname": str(AlertName.PAUSED), "environment": env.name, "severity": str(Severity.INFO),
              "mode": str(env.mode), "scope": "object" if p.kind else "environment"}
    if p.kind:
        labels.update({"kind": p.kind, "namespace": p.namespace, "name": p.name})
    what = f"{p.scope} in {env.name}" if p.kind else f"environment {env.name}"
    until = p.until.isoformat().replace("+00:00", "Z")
    annotations = {
        "summary": f"driftd enforcement of {what} is paused until {until} (observe mode)",
        "description": _clip(p.reason, MAX_DESCRIPTION),
        "paused_by": p.by,
        "until": until,
    }
    return Alert(labels, annotations, base_url.rstrip("/") + "/api/v1/environments/" + quote(env.name, safe=""))


def image_alert(env: EnvironmentSettings, f: ImageFinding, base_url: str) -> Alert:
    """Labels identify the alert (environment, policy, image, and the tag for a moved tag); versions go in
    annotations, so a newer ``latest`` updates the same alert instead of opening another one."""
    name = IMAGE_ALERTS[f.kind]
    labels = {"alertname": str(name), "environment": env.name, "policy": f.policy,
              "severity": str(Severity.CRITICAL if f.kind is FindingKind.TAG_MOVED else env.severity),
              "mode": str(env.mode)}
    if f.image:
        labels["image"] = f.image
    if f.kind is FindingKind.TAG_MOVED and f.tag:
        labels["tag"] = f.tag
    summary = {
        FindingKind.UPDATE_AVAILABLE: f"{env.name} runs {f.image}:{f.current or '?'}, policy {f.policy} selects "
                                      f"{f.latest}",
        FindingKind.TAG_MOVED: f"tag {f.image}:{f.tag} was moved to another digest",
        FindingKind.DIGEST_MISSING: f"{f.current} no longer exists in the registry ({env.name})",
        FindingKind.WRITE_BACK_FAILED: f"driftd could not write {f.policy} {f.latest or ''} back to Git "
                                       f"for {env.name}",
    }[f.kind]
    annotations = {"summary": summary, "description": _clip(f.message or summary, MAX_DESCRIPTION)}
    for k in ("current", "latest", "old_digest", "new_digest"):
        v = getattr(f, k)
        if v:
            annotations[k] = _clip(str(v), MAX_VALUE)
    return Alert(labels, annotations, base_url.rstrip("/") + "/api/v1/environments/" + quote(env.name, safe=""))


def changed_by(d: Drift) -> str | None:
    if d.changed_by:
        return d.changed_by
    who = sorted({c.changed_by for c in d.changes if c.changed_by})
    return ", ".join(who) if who else None


def describe(d: Drift) -> str:
    """The changes, one per line, bounded to MAX_DESCRIPTION. Expects an already redacted drift."""
    lines = []
    for c in d.changes:
        if c.op is ChangeOp.ADD:
            lines.append(f"{c.path}: added {_value(c.actual)}")
        elif c.op is ChangeOp.REMOVE:
            lines.append(f"{c.path}: removed (Git: {_value(c.expected)})")
        else:
            lines.append(f"{c.path}: {_value(c.expected)} -> {_value(c.actual)}")
    if not lines:
        lines.append({"missing": "declared in Git, absent live", "orphaned": "no longer declared, still live",
                      "unmanaged": "live, never declared"}.get(str(d.drift), str(d.drift)))
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        rest = len(lines) - i
        tail = f"... and {rest} more change(s)"
        if used + len(line) + 1 > MAX_DESCRIPTION - len(tail) - 1:
            out.append(tail)
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def _value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return _clip(s, MAX_VALUE)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _obj(key: ResourceKey) -> str:
    scope = f"{key.namespace}/" if key.namespace else ""
    return f"{key.kind} {scope}{key.name}"
