"""Break-glass pauses in the state store: kv namespace ``pauses``, one row per (environment, scope).

Kept in the ``kv`` table (no schema change): the daemon, ``driftd pause``/``resume`` and ``driftd check``
are separate processes sharing the SQLite file, so a pause written by the CLI is seen by the
daemon's next read. Each pause and resume is also an audit event (``paused``/``resumed``).
"""

from __future__ import annotations

import json

from ..model import Pause
from .records import from_ts, ts

NAMESPACE = "pauses"


def kv_key(p: Pause) -> str:
    return f"{p.environment}|{p.scope}"


def dump(p: Pause) -> str:
    return json.dumps({"environment": p.environment, "kind": p.kind, "namespace": p.namespace, "name": p.name,
                       "until": ts(p.until), "since": ts(p.since) if p.since else None, "reason": p.reason,
                       "by": p.by}, sort_keys=True)


def load(text: str) -> Pause | None:
    """None for a row this driftd cannot read (written by a newer one): ignored, never fatal."""
    try:
        d = json.loads(text)
        return Pause(environment=str(d["environment"]), until=from_ts(float(d["until"])), reason=str(d["reason"]),
                     by=str(d["by"]), kind=str(d.get("kind") or ""), namespace=str(d.get("namespace") or ""),
                     name=str(d.get("name") or ""),
                     since=from_ts(float(d["since"])) if d.get("since") is not None else None)
    except (ValueError, KeyError, TypeError):
        return None


def describe(p: Pause) -> str:
    return f"pause {p.what} until {p.until.isoformat().replace('+00:00', 'Z')}: {p.reason}"
