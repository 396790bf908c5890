"""``driftd report --format markdown``: for pull-request comments and tickets (GitHub/GitLab flavoured)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TextIO

from ..model import Report, ResourceKey, Status
from .document import TimelineRow, diff_lines, group_report, object_name, shorten, totals, what_driftd_did, when

_ICON = {Status.IN_SYNC: "✅ in sync", Status.DRIFTED: "⚠️ drifted", Status.ERROR: "❌ error"}


def _cell(text: str) -> str:
    """A table cell: pipes escaped, newlines folded (a cell is one line)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def render_markdown(report: Report, out: TextIO, *, title: str = "driftd report",
                    first_seen: Mapping[tuple[str, ResourceKey], datetime] | None = None,
                    events: Sequence[TimelineRow] = (), generated: datetime | None = None) -> None:
    groups = group_report(report, first_seen)
    n_env, n_drift, n_err = totals(groups)
    out.write(f"## {title}\n\n")
    stamp = f" at {when(generated)}" if generated else ""
    out.write(f"{n_env} environment(s), {n_drift} drift(s), {n_err} error(s){stamp}\n\n")
    out.write("| environment | status | mode | revision | last pass | drifts |\n|---|---|---|---|---|---|\n")
    for g in groups:
        e = g.env
        counts = ", ".join(f"{n} {k}" for k, n in sorted(g.counts.items())) or "none"
        out.write(f"| {_cell(e.name)} | {_ICON[e.status]} | {e.mode or ''} | {_code(shorten(e.revision))} | "
                  f"{when(e.checked_at)} | {_cell(counts)} |\n")
    for g in groups:
        e = g.env
        if not e.drifts and not e.error and not e.pauses:
            continue
        out.write(f"\n### {e.name}\n\n")
        if e.error:
            out.write(f"> **error:** {_cell(e.error)}\n\n")
        for p in e.pauses:
            out.write(f"> **paused** {_code(p.scope)} until {when(p.until)} by {_cell(p.by)}: {_cell(p.reason)}\n\n")
        for kg in g.kinds:
            out.write(f"#### {kg.kind} ({kg.target}, {len(kg.drifts)})\n\n")
            for d in kg.drifts:
                who = f" by **{_cell(d.changed_by)}**" if d.changed_by else ""
                since = d.changed_at or g.first_seen.get(d.key)
                at = f" since {when(since)}" if since else ""
                out.write(f"- {_code(object_name(d.key))}: **{d.drift}**{who}{at}; {_cell(what_driftd_did(d))}\n")
                lines = diff_lines(d)
                if lines:
                    # A ```diff block renders - / + in red / green on GitHub and GitLab.
                    out.write("\n  ```diff\n")
                    for sign, text in lines:
                        prefix = "@@ " if sign == "@" else f"{sign} "
                        out.write(f"  {prefix}{text.replace('```', '` ` `')}\n")
                    out.write("  ```\n\n")
    if events:
        out.write("\n### Audit trail\n\n| time | environment | event | object | detail |\n|---|---|---|---|---|\n")
        for r in events:
            detail = "; ".join(x for x in (r.drift, f"by {r.changed_by}" if r.changed_by else None, r.reason,
                                           f"actor {r.actor}" if r.actor != "driftd" else None) if x)
            out.write(f"| {when(r.ts)} | {_cell(r.env)} | {r.event} | {_cell(r.object) or '-'} | {_cell(detail)} |\n")
