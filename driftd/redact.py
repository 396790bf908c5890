"""Last line of defence before a drift leaves the process (alerts, the HTTP API).

Targets already replace secret values with ``model.REDACTED``; this re-checks, by kind and by
field name, so a target that forgot cannot leak a Secret through an alert or the API.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .model import REDACTED, Change, Drift, EnvironmentReport

# Kinds whose values never leave the process: only paths are shown.
SECRET_KINDS = frozenset({
    "Secret",  # Kubernetes core/v1
    "SealedSecret",
    "AWS::SecretsManager::Secret",
})
# (kind, JSON pointer prefix) pairs whose values are secret in an otherwise ordinary kind:
# SSM parameter values may be SecureString, and a drift does not say which type the live one has.
_SECRET_PATHS = {
    "AWS::SSM::Parameter": ("/Value",),
    "AWS::Lambda::Function": ("/Environment",),
    "AWS::IAM::User": ("/LoginProfile",),
}
_SECRET_FIELD = re.compile(r"(password|passwd|secret|token|credential|private_?key|api_?key|securestring)", re.I)


def _secret_value(kind: str, path: str) -> bool:
    if kind in SECRET_KINDS:
        return True
    if any(path == p or path.startswith(p + "/") for p in _SECRET_PATHS.get(kind, ())):
        return True
    return bool(_SECRET_FIELD.search(path))


def _scrub(v: Any) -> Any:
    """Within a structured value, redact fields whose names look like credentials."""
    if isinstance(v, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_FIELD.search(k) and x is not None else _scrub(x))
                for k, x in v.items()}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def redact_change(kind: str, c: Change) -> Change:
    if _secret_value(kind, c.path):
        return dataclasses.replace(
            c,
            expected=REDACTED if c.expected is not None else None,
            actual=REDACTED if c.actual is not None else None,
        )
    return dataclasses.replace(c, expected=_scrub(c.expected), actual=_scrub(c.actual))


def redact_drift(d: Drift) -> Drift:
    return dataclasses.replace(d, changes=tuple(redact_change(d.key.kind, c) for c in d.changes))


def redact_report(r: EnvironmentReport) -> EnvironmentReport:
    return dataclasses.replace(r, drifts=tuple(redact_drift(d) for d in r.drifts))
