"""``driftd report``: the current state from the state store (or a fresh read-only check), rendered as
markdown, HTML or JSON, grouped by environment and kind, with diffs. Secrets are masked by the
renderers (and were never stored)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from ..config import Config
from ..model import Action, Drift, EnvironmentReport, Report, ResourceKey, Status
from ..policy.modes import environment_mode
from ..redact import redact_report
from ..render import render_html, render_markdown
from ..render.document import TimelineRow, drifts_since
from ..state import connect, db_path
from ..state import queries as q
from ..state.timeline import timeline_rows
from .history import parse_since

EXIT_ERROR = 2
FirstSeen = dict[tuple[str, ResourceKey], datetime]


def from_store(config: Config, envs: Sequence[str], since: datetime | None
               ) -> tuple[Report, FirstSeen, list[TimelineRow]]:
    """What the daemon last recorded: open drifts (with what it did about them), the revision and time of
    each environment's last full pass, and (with ``since``) the audit trail from then on."""
    conn = connect(db_path(config.daemon.state_dir), readonly=True)
    now = datetime.now(UTC)
    try:
        reports, first = [], {}
        for env in config.environments:
            if envs and env.name not in envs:
                continue
            drifts = []
            for od in q.open_drifts(conn, env.name):
                try:
                    action = Action(od.last_action) if od.last_action else Action.REPORTED
                except ValueError:
                    action = Action.REPORTED
                drifts.append(Drift(od.key, od.drift, od.changes, changed_by=od.changed_by,
                                    changed_at=max((c.changed_at for c in od.changes if c.changed_at), default=None),
                                    action=action, reason=od.last_reason))
                first[(env.name, od.key)] = od.first_seen
            revision, updated = q.inventory_info(conn, env.name)
            remaining = any(d.action is not Action.REVERTED for d in drifts)
            reports.append(EnvironmentReport(env.name, revision, Status.DRIFTED if remaining else Status.IN_SYNC,
                                             resources=0, drifts=tuple(drifts),
                                             mode=environment_mode(env, now).mode, checked_at=updated))
        events = q.events(conn, since=since) if since is not None else []
    finally:
        conn.close()
    rows = [r for r in timeline_rows(events) if not envs or r.env in envs]
    return Report(tuple(reports)), first, rows


def run_report(config: Config, *, envs: Sequence[str], since: str | None, fmt: str, fresh: bool,
               out: TextIO) -> int:
    now = datetime.now(UTC)
    try:
        start = parse_since(since, now) if since else None
    except ValueError as e:
        print(f"driftd: {e}", file=sys.stderr)
        return EXIT_ERROR
    path = db_path(config.daemon.state_dir)
    first: FirstSeen = {}
    rows: list[TimelineRow] = []
    if not fresh and not path.exists():
        print(f"driftd: no state store at {path} (the daemon has not run with this state_dir); "
              "running a fresh read-only check instead", file=sys.stderr)
        fresh = True
    if fresh:
        from .oneshot import run_check

        report = run_check(config, envs=envs)
    else:
        try:
            report, first, rows = from_store(config, envs, start)
        except sqlite3.Error as e:
            print(f"driftd: cannot read the state store {path}: {e}", file=sys.stderr)
            return EXIT_ERROR
    shown = drifts_since(report, start, first)
    if fmt == "json":
        envs_out = []
        for env in shown.environments:
            red = redact_report(env)
            d = red.to_dict()
            for drift, dd in zip(red.drifts, d["drifts"], strict=True):
                seen = first.get((env.name, drift.key))
                if seen is not None:
                    dd["first_seen"] = seen.isoformat().replace("+00:00", "Z")
            envs_out.append(d)
        data: dict[str, object] = {"generated_at": now.isoformat().replace("+00:00", "Z"),
                                   "source": "check" if fresh else "state", "environments": envs_out}
        if rows:
            data["events"] = [_row_dict(r) for r in rows]
        json.dump(data, out, indent=2, default=str)
        out.write("\n")
    elif fmt == "html":
        render_html(shown, out, first_seen=first, events=rows, generated=now)
    else:
        render_markdown(shown, out, first_seen=first, events=rows, generated=now)
    return report.exit_code


def _row_dict(r: TimelineRow) -> dict[str, object]:
    return {"id": r.id, "ts": r.ts.isoformat().replace("+00:00", "Z"), "environment": r.env, "event": r.event,
            "object": r.object or None, "revision": r.revision, "drift": r.drift, "reason": r.reason,
            "changed_by": r.changed_by, "actor": r.actor, "paths": list(r.paths)}
