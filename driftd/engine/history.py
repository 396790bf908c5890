"""``driftd history``: read the audit trail (filters by environment, object and time; text or JSON)."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

from ..config import Config, parse_duration
from ..state import AuditEvent, EventKind, connect, db_path
from ..state import queries as q
from ..state.records import iso

EXIT_OK, EXIT_ERROR = 0, 2


def parse_since(text: str, now: datetime) -> datetime:
    """``24h`` / ``7d`` (ago) or an ISO date/time (``2024-06-01``, ``2024-06-01T12:00:00Z``)."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"--since: expected a duration such as 24h or 7d, or an ISO date, found {text!r}") from e
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_object(text: str) -> tuple[str, str | None, str]:
    """``KIND/[NAMESPACE/]NAME`` -> (kind, namespace or None, name). AWS keys use the region as namespace."""
    parts = text.split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], None, parts[1]
    if len(parts) == 3 and parts[0] and parts[2]:
        return parts[0], parts[1], parts[2]
    raise ValueError(f"--object: expected KIND/NAME or KIND/NAMESPACE/NAME, found {text!r}")


def show_history(config: Config, *, env: str | None, obj: str | None, since: str, output: str,
                 out: TextIO) -> int:
    try:
        start = parse_since(since, datetime.now(UTC))
        kind, ns, name = parse_object(obj) if obj else (None, None, None)
    except ValueError as e:
        print(f"driftd: {e}", file=sys.stderr)
        return EXIT_ERROR
    if env is not None and env not in {e.name for e in config.environments}:
        print(f"driftd: note: {env!r} is not in {config.path}; showing its recorded history", file=sys.stderr)
    path = db_path(config.daemon.state_dir)
    if not path.exists():
        print(f"driftd: no audit trail yet at {path} (the daemon has not run with this state_dir)", file=sys.stderr)
        events: list[AuditEvent] = []
    else:
        try:
            conn = connect(path, readonly=True)
            try:
                events = q.events(conn, env=env, since=start, kind=kind, namespace=ns, name=name)
            finally:
                conn.close()
        except sqlite3.Error as e:
            print(f"driftd: cannot read the audit trail {path}: {e}", file=sys.stderr)
            return EXIT_ERROR
    if output == "json":
        json.dump({"events": [e.to_dict() for e in events]}, out, indent=2, default=str)
        out.write("\n")
    else:
        render_text(events, out)
    return EXIT_OK


_MARK = {EventKind.DETECTED: "!", EventKind.REVERTED: "<", EventKind.REVERT_FAILED: "x",
         EventKind.RESOLVED: "=", EventKind.SKIPPED: "-", EventKind.WOULD_REVERT: "?", EventKind.BRAKE: "#",
         EventKind.IMAGE: "@"}


def render_text(events: list[AuditEvent], out: TextIO) -> None:
    for e in events:
        obj = str(e.key) if e.key else "-"
        rev = (e.revision or "-")[:12]
        line = f"{iso(e.ts)} {_MARK.get(e.event, ' ')} {e.env:<16} {e.event:<13} {obj}  rev {rev}"
        if e.drift:
            line += f"  {e.drift}"
        if e.changed_by:
            line += f"  by {e.changed_by}"
        if e.actor != "driftd":
            line += f"  actor {e.actor}"
        if e.reason:
            line += f"  ({e.reason})"
        out.write(line + "\n")
        for c in e.changes[:10]:
            out.write(f"      {c.op} {c.path}\n")
        if len(e.changes) > 10:
            out.write(f"      ... {len(e.changes) - 10} more\n")
    out.write(f"{len(events)} event(s)\n")
