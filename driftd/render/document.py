"""The report as the renderers see it: environments, their drifts grouped by kind, changes as diff lines."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from ..model import Action, ChangeOp, Drift, EnvironmentReport, Report, ResourceKey, Status
from ..redact import redact_report


@dataclass(frozen=True)
class KindGroup:
    target: str
    kind: str
    drifts: tuple[Drift, ...]


@dataclass(frozen=True)
class EnvGroup:
    env: EnvironmentReport
    kinds: tuple[KindGroup, ...]
    # When each drift was first recorded (from the state store; absent for a fresh check).
    first_seen: Mapping[ResourceKey, datetime] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Drift kind -> how many still remain (a reverted drift no longer does)."""
        out: dict[str, int] = {}
        for d in self.env.drifts:
            if d.action is not Action.REVERTED:
                out[str(d.drift)] = out.get(str(d.drift), 0) + 1
        return out


@dataclass(frozen=True)
class TimelineRow:
    """One audit-trail event, as the web page and reports show it (the state layer builds these)."""

    id: int
    ts: datetime
    env: str
    event: str
    object: str  # "Kind/ns/name" or "" for environment-wide events
    revision: str | None = None
    drift: str | None = None
    reason: str | None = None
    changed_by: str | None = None
    actor: str = "driftd"
    paths: tuple[str, ...] = ()


def group_report(report: Report, first_seen: Mapping[tuple[str, ResourceKey], datetime] | None = None
                 ) -> list[EnvGroup]:
    """Redacted, and grouped: environments in report order, kinds sorted (target, kind), objects by name."""
    out = []
    for env in report.environments:
        env = redact_report(env)
        by_kind: dict[tuple[str, str], list[Drift]] = {}
        for d in env.drifts:
            by_kind.setdefault((str(d.key.target), d.key.kind), []).append(d)
        kinds = tuple(KindGroup(t, k, tuple(sorted(ds, key=lambda d: (d.key.namespace, d.key.name))))
                      for (t, k), ds in sorted(by_kind.items()))
        seen = {k: v for (e, k), v in (first_seen or {}).items() if e == env.name}
        out.append(EnvGroup(env, kinds, seen))
    return out


def object_name(key: ResourceKey) -> str:
    return f"{key.kind}/{key.namespace}/{key.name}" if key.namespace else f"{key.kind}/{key.name}"


def value_lines(v: Any) -> list[str]:
    """A value as the lines of a diff side: YAML for structures, JSON for scalars, strings as they are."""
    if isinstance(v, (dict, list)):
        return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n").splitlines() or ["{}"]
    return [v if isinstance(v, str) else json.dumps(v)]


def diff_lines(d: Drift) -> list[tuple[str, str]]:
    """(sign, text) pairs: ``@`` a changed path, ``-`` expected (Git), ``+`` actual (live)."""
    out: list[tuple[str, str]] = []
    for c in d.changes:
        by = f"  (by {c.changed_by})" if c.changed_by and c.changed_by != d.changed_by else ""
        out.append(("@", f"{c.path}{by}"))
        if c.op is not ChangeOp.ADD:
            out.extend(("-", line) for line in value_lines(c.expected))
        if c.op is not ChangeOp.REMOVE:
            out.extend(("+", line) for line in value_lines(c.actual))
    return out


def what_driftd_did(d: Drift) -> str:
    """The action in words: reported, reverted, revert failed (why), held (by which brake or pause)."""
    if d.action is Action.REVERTED:
        return "reverted"
    if d.action is Action.REVERT_FAILED:
        return f"revert failed: {d.reason}" if d.reason else "revert failed"
    if d.action is Action.SKIPPED:
        return f"held: {d.reason}" if d.reason else "held"
    return f"reported ({d.reason})" if d.reason else "reported"


def when(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t else ""


def totals(groups: Iterable[EnvGroup]) -> tuple[int, int, int]:
    """(environments, remaining drifts, environments in error)."""
    gs = list(groups)
    return (len(gs), sum(sum(g.counts.values()) for g in gs), sum(g.env.status is Status.ERROR for g in gs))


def shorten(rev: str | None, n: int = 12) -> str:
    return (rev or "-")[:n]


def drifts_since(report: Report, since: datetime | None,
                 first_seen: Mapping[tuple[str, ResourceKey], datetime] | None = None) -> Report:
    """Only the drifts that began at or after ``since`` (changed_at, else first seen; unknown ones stay)."""
    if since is None:
        return report
    envs = []
    for env in report.environments:
        keep = []
        for d in env.drifts:
            t = d.changed_at or (first_seen or {}).get((env.name, d.key))
            if t is None or t >= since:
                keep.append(d)
        envs.append(_with_drifts(env, tuple(keep)))
    return Report(tuple(envs))


def _with_drifts(env: EnvironmentReport, drifts: Sequence[Drift]) -> EnvironmentReport:
    from dataclasses import replace

    return replace(env, drifts=tuple(drifts))
