"""Last line of defence before a drift leaves the process (alerts, the HTTP API, CLI output).

Targets already mask secret-like values where they compute changes (with both objects at hand,
see :mod:`driftd.secrets`); this applies the same policy again, by kind, path and field name,
so a target that forgot cannot leak a Secret through an alert, the API or the CLI.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .model import REDACTED, Change, Drift, EnvironmentReport
from .secrets import SECRET_KINDS, redact_changes, scrub_text

__all__ = ["SECRET_KINDS", "redact_change", "redact_drift", "redact_report"]


def redact_change(kind: str, c: Change) -> Change:
    (out,) = redact_changes(kind, (c,))
    return out


def redact_drift(d: Drift) -> Drift:
    changes = tuple(redact_changes(d.key.kind, d.changes))
    reason = d.reason
    if reason:
        # A revert-failure reason may quote a value that the changes mask: scrub those values from it.
        hidden: set[str] = set()
        for before, after in zip(d.changes, changes, strict=True):
            if after != before:
                for side in ("expected", "actual"):
                    _hidden_leaves(getattr(before, side), getattr(after, side), hidden)
        reason = scrub_text(reason, hidden)
    return dataclasses.replace(d, changes=changes, reason=reason)


def _hidden_leaves(before: Any, after: Any, out: set[str]) -> None:
    if after == REDACTED and isinstance(before, (str, int, float)) and not isinstance(before, bool):
        out.add(str(before))
    elif isinstance(before, dict) and isinstance(after, dict):
        for k, v in before.items():
            _hidden_leaves(v, after.get(k), out)
    elif isinstance(before, list) and isinstance(after, list):
        for b, a in zip(before, after, strict=False):
            _hidden_leaves(b, a, out)


def redact_report(r: EnvironmentReport) -> EnvironmentReport:
    return dataclasses.replace(r, drifts=tuple(redact_drift(d) for d in r.drifts))
