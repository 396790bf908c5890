"""What the state store keeps, as frozen dataclasses, and their (de)serialization."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..diff.secrets import redact_changes
from ..model import Change, ChangeOp, DriftKind, ResourceKey, TargetKind


class EventKind(StrEnum):
    DETECTED = "detected"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"
    RESOLVED = "resolved"
    SKIPPED = "skipped"
    WOULD_REVERT = "would_revert"
    BRAKE = "brake"
    IMAGE = "image"  # an image policy finding: update available, tag moved, digest missing, written back
    PAUSED = "paused"  # break-glass: enforcement held for an environment or object (driftd pause)
    RESUMED = "resumed"  # the pause ended (driftd resume, or it expired)
    BASELINE = "baseline"  # the baseline of undeclared properties recorded or re-taken (driftd baseline)


@dataclass(frozen=True)
class AuditEvent:
    ts: datetime
    env: str
    event: EventKind
    key: ResourceKey | None = None
    revision: str | None = None
    drift: DriftKind | None = None
    reason: str | None = None
    changes: tuple[Change, ...] = ()
    changed_by: str | None = None
    actor: str = "driftd"
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        k = self.key
        return {
            "id": self.id,
            "ts": iso(self.ts),
            "environment": self.env,
            "revision": self.revision,
            "event": str(self.event),
            "target": str(k.target) if k else None,
            "api_version": k.api_version if k else None,
            "kind": k.kind if k else None,
            "namespace": k.namespace if k else None,
            "name": k.name if k else None,
            "drift": str(self.drift) if self.drift else None,
            "reason": self.reason,
            "changes": [c.to_dict() for c in self.changes],
            "changed_by": self.changed_by,
            "actor": self.actor,
        }


@dataclass(frozen=True)
class OpenDrift:
    env: str
    key: ResourceKey
    drift: DriftKind
    first_seen: datetime
    last_seen: datetime
    revision: str | None
    changes: tuple[Change, ...]
    changed_by: str | None
    last_action: str | None
    last_reason: str | None


@dataclass(frozen=True)
class WriteRecord:
    """One write to a live system (see driftd.journal): the intent, and its outcome once known."""

    id: int
    ts: datetime
    env: str
    target: str
    subject: str
    operation: str
    revision: str | None
    actor: str
    outcome: str | None  # None: in flight (or the process died; marked `interrupted` at the next start)
    outcome_ts: datetime | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts": iso(self.ts), "environment": self.env, "target": self.target,
                "subject": self.subject, "operation": self.operation, "revision": self.revision,
                "actor": self.actor, "outcome": self.outcome,
                "outcome_ts": iso(self.outcome_ts) if self.outcome_ts else None, "reason": self.reason}


def ts(t: datetime) -> float:
    return t.timestamp()


def from_ts(v: float) -> datetime:
    return datetime.fromtimestamp(v, UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def key_cols(k: ResourceKey) -> tuple[str, str, str, str, str]:
    return (str(k.target), k.api_version, k.kind, k.namespace, k.name)


def key_from(target: str, api_version: str, kind: str, namespace: str, name: str) -> ResourceKey:
    return ResourceKey(TargetKind(target), kind, name, namespace, api_version)


def dump_changes(kind: str, changes: tuple[Change, ...] | list[Change]) -> str:
    """Secrets are redacted here as a last line of defence: targets redact first."""
    return json.dumps([c.to_dict() for c in redact_changes(kind, changes)], default=str, sort_keys=True)


def load_changes(text: str | None) -> tuple[Change, ...]:
    out = []
    for d in json.loads(text or "[]"):
        at = d.get("changed_at")
        out.append(Change(path=d["path"], expected=d.get("expected"), actual=d.get("actual"),
                          op=ChangeOp(d.get("op", "not_equal")), changed_by=d.get("changed_by"),
                          changed_at=datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None))
    return tuple(out)


def dump_keys(keys: frozenset[ResourceKey]) -> str:
    return json.dumps(sorted(key_cols(k) for k in keys), separators=(",", ":"))


def load_keys(text: str) -> frozenset[ResourceKey]:
    return frozenset(key_from(*row) for row in json.loads(text))
