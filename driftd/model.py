"""Pure types shared by every layer: the vocabulary of drift.

The enums are a closed vocabulary: their values appear in reports, metrics
labels and alerts, so they change only with a migration of all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TargetKind(StrEnum):
    KUBERNETES = "kubernetes"
    AWS = "aws"


class DriftKind(StrEnum):
    MODIFIED = "modified"
    MISSING = "missing"
    ORPHANED = "orphaned"
    UNMANAGED = "unmanaged"
    UNDECLARED = "undeclared"  # a security-relevant property the template leaves out moved from its baseline


class Action(StrEnum):
    REPORTED = "reported"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"
    SKIPPED = "skipped"


class Mode(StrEnum):
    OBSERVE = "observe"
    ALERT = "alert"
    ENFORCE = "enforce"


class ObjectMode(StrEnum):
    """Per-object override (``driftd.io/mode``): the environment modes plus ``disabled``."""

    OBSERVE = "observe"
    ALERT = "alert"
    ENFORCE = "enforce"
    DISABLED = "disabled"


class Severity(StrEnum):
    """The ``severity`` label of an alert (Alertmanager routes on it)."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class PassKind(StrEnum):
    """Who asked for a pass; the mode function and the plan honour it."""

    CHECK = "check"  # driftd check: read-only
    RUN = "run"  # driftd run (the daemon): modes, windows, pauses and brakes apply
    SYNC = "sync"  # driftd sync: an operator asked to revert whatever is reportable


class Status(StrEnum):
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    ERROR = "error"


class ChangeOp(StrEnum):
    """CloudFormation's PropertyDifference vocabulary."""

    ADD = "add"  # live has it, desired does not
    REMOVE = "remove"  # desired has it, live does not
    NOT_EQUAL = "not_equal"


REDACTED = "(redacted)"


@dataclass(frozen=True)
class Pause:
    """Break-glass: enforcement of an environment (or of one object) held until ``until``.

    A paused object is in ``observe`` mode (``policy.modes.decide_mode``). ``kind`` empty: the whole
    environment; otherwise the object ``kind``/``namespace``/``name`` (kind compared case-insensitively,
    as ``kubectl`` takes ``deployment/web``), whichever target holds it.
    """

    environment: str
    until: datetime
    reason: str
    by: str
    kind: str = ""
    namespace: str = ""
    name: str = ""
    since: datetime | None = None

    @property
    def scope(self) -> str:
        """``*`` for the environment, else ``KIND/[NS/]NAME`` (the CLI's ``--object``)."""
        if not self.kind:
            return "*"
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def what(self) -> str:
        """What is paused, in words: ``environment``, or the object's scope."""
        return "environment" if not self.kind else self.scope

    def holds(self, now: datetime) -> bool:
        return now < self.until

    def covers(self, key: ResourceKey | None) -> bool:
        """Whether the pause applies to ``key`` (None: the environment as a whole)."""
        if not self.kind:
            return True
        return key is not None and key.kind.lower() == self.kind.lower() and key.name == self.name \
            and key.namespace == self.namespace

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scope": self.scope, "until": _iso(self.until), "reason": self.reason, "by": self.by}
        if self.since is not None:
            d["since"] = _iso(self.since)
        return d


@dataclass(frozen=True, order=True)
class ResourceKey:
    """target + type + scope + name. For AWS, kind is the CloudFormation type and namespace the region."""

    target: TargetKind
    kind: str
    name: str
    namespace: str = ""
    api_version: str = ""

    def __str__(self) -> str:
        scope = f"{self.namespace}/" if self.namespace else ""
        return f"{self.target}:{self.kind}:{scope}{self.name}"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass(frozen=True)
class Change:
    """One field-level difference. ``path`` is a JSON pointer; absent sides are None with op saying which."""

    path: str
    expected: Any = None
    actual: Any = None
    op: ChangeOp = ChangeOp.NOT_EQUAL
    changed_by: str | None = None
    changed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "op": str(self.op)}
        if self.op is not ChangeOp.ADD:
            d["expected"] = self.expected
        if self.op is not ChangeOp.REMOVE:
            d["actual"] = self.actual
        if self.changed_by:
            d["changed_by"] = self.changed_by
        if self.changed_at:
            d["changed_at"] = _iso(self.changed_at)
        return d


@dataclass(frozen=True)
class Drift:
    key: ResourceKey
    drift: DriftKind
    changes: tuple[Change, ...] = ()
    changed_by: str | None = None
    changed_at: datetime | None = None
    action: Action = Action.REPORTED
    reason: str | None = None  # why skipped / why the revert failed
    mode: Mode | None = None  # effective mode for this object, after annotations
    # The live object's identity and version when it was judged (uid, resourceVersion): a delete
    # sends them as preconditions, so an object recreated or changed since is never deleted on the
    # strength of a verdict about another one.
    judged: tuple[str, str] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "target": str(self.key.target),
            "kind": self.key.kind,
            "api_version": self.key.api_version,
            "namespace": self.key.namespace,
            "name": self.key.name,
            "drift": str(self.drift),
            "changes": [c.to_dict() for c in self.changes],
            "changed_by": self.changed_by,
            "changed_at": _iso(self.changed_at) if self.changed_at else None,
            "action": str(self.action),
        }
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass(frozen=True)
class DesiredObject:
    """A Kubernetes manifest as read from Git. ``source`` is ``path[#document]`` in the tree."""

    key: ResourceKey
    body: Mapping[str, Any]
    source: str
    sensitive: bool = False  # decrypted from SOPS: every value is masked in reports, like a Secret's


@dataclass(frozen=True)
class AwsDeclaration:
    """A CloudFormation-shaped resource declaration, intrinsics already resolved.

    ``not_checked`` lists JSON pointers (below Properties) that could not be
    resolved without a deployed stack: they are never compared.
    """

    key: ResourceKey
    logical_id: str
    type: str
    properties: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    not_checked: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class ClusterInfo:
    """What a renderer needs to know about a cluster (Helm's ``.Capabilities``): its version
    (``v1.34.4``) and the API versions it serves (``apps/v1``, ``apps/v1/Deployment``, ...)."""

    kube_version: str
    api_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredState:
    """Everything an environment declares at one revision."""

    revision: str
    kubernetes: tuple[DesiredObject, ...] = ()
    aws: tuple[AwsDeclaration, ...] = ()
    warnings: tuple[str, ...] = ()  # non-fatal: unknown CloudFormation types and the like


@dataclass(frozen=True)
class NotChecked:
    """A declared resource no comparison covered, and why (unsupported type, identity unknown, read failed)."""

    key: ResourceKey
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.key.kind, "name": self.key.name, "reason": self.reason}


@dataclass(frozen=True)
class Coverage:
    """How much of what Git declares a pass actually compared: ``checked`` of ``declared``."""

    checked: int
    declared: int
    not_checked: tuple[NotChecked, ...] = ()

    @property
    def ratio(self) -> float:
        return self.checked / self.declared if self.declared else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "declared": self.declared, "ratio": round(self.ratio, 4),
                "not_checked": [n.to_dict() for n in self.not_checked]}


@dataclass(frozen=True)
class TargetResult:
    """One target's verdict for one environment."""

    target: TargetKind
    resources: int
    drifts: tuple[Drift, ...] = ()
    errors: tuple[str, ...] = ()  # per-object problems that did not stop the others
    api_calls: int = 0
    # AWS: per resource type, (declared and live in scope, all live in scope): how much of the scope Git covers.
    coverage: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # Inventory keys whose orphan status this pass could not determine (their live read failed):
    # the engine keeps them in the inventory so a later pass can still report them orphaned.
    undetermined: frozenset[ResourceKey] = frozenset()
    # The declared keys as the target names them (None: as the desired state does). Kubernetes: a
    # custom cluster-scoped object's key without the loader's default namespace (only discovery knows).
    declared: frozenset[ResourceKey] | None = None
    # AWS: declared resources checked / declared, with the reason for each one not checked.
    checked_coverage: Coverage | None = None
    # Desired keys the target names otherwise (Kubernetes: a cluster-scoped custom resource, whose scope only
    # discovery knows), desired key -> the target's. The engine keys overrides, drifts and the inventory
    # by the target's key, so a per-object mode holds whatever the loader guessed.
    renamed: Mapping[ResourceKey, ResourceKey] = field(default_factory=dict)
    # AWS: per declared resource found live, the security-relevant properties its template leaves out, as read
    # (the engine compares them with the recorded baseline: driftd.diff.baseline).
    undeclared_live: Mapping[ResourceKey, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvironmentReport:
    name: str
    revision: str | None
    status: Status
    error: str | None = None
    resources: int = 0
    drifts: tuple[Drift, ...] = ()
    mode: Mode | None = None
    checked_at: datetime | None = None
    coverage: Coverage | None = None  # AWS declarations: checked / declared (None: the env has no AWS target)
    pauses: tuple[Pause, ...] = ()  # break-glass pauses holding at checked_at

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "revision": self.revision,
            "status": str(self.status),
            "error": self.error,
            "resources": self.resources,
            "drifts": [x.to_dict() for x in self.drifts],
        }
        if self.mode is not None:
            d["mode"] = str(self.mode)
        if self.checked_at is not None:
            d["checked_at"] = _iso(self.checked_at)
        if self.coverage is not None:
            d["coverage"] = self.coverage.to_dict()
        if self.pauses:
            d["pauses"] = [p.to_dict() for p in self.pauses]
        return d


@dataclass(frozen=True)
class Report:
    environments: tuple[EnvironmentReport, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"environments": [e.to_dict() for e in self.environments]}

    @property
    def exit_code(self) -> int:
        """CLI contract: 0 in sync, 1 drift found, 2 any environment could not be checked."""
        if any(e.status is Status.ERROR for e in self.environments):
            return 2
        if any(e.status is Status.DRIFTED for e in self.environments):
            return 1
        return 0


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
