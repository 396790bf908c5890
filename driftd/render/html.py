"""HTML building blocks shared by ``driftd report --format html`` (one self-contained file: the
stylesheet is inlined) and the daemon's web page. Every value is escaped; nothing loads from
elsewhere (no CDN, no web fonts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from importlib import resources
from typing import TextIO

from ..model import Action, Report, ResourceKey, Status
from .document import (
    EnvGroup,
    TimelineRow,
    diff_lines,
    group_report,
    object_name,
    shorten,
    totals,
    what_driftd_did,
    when,
)


def asset(name: str) -> str:
    """A file shipped in driftd/render/assets (the stylesheet, the page's script)."""
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def e(text: object) -> str:
    return escape(str(text), quote=True)


def env_id(name: str) -> str:
    return "env-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def env_table(groups: Sequence[EnvGroup], *, link: bool = True) -> str:
    rows = []
    for g in groups:
        env = g.env
        counts = ", ".join(f"{n} {k}" for k, n in sorted(g.counts.items())) or "none"
        name = f'<a href="#{env_id(env.name)}">{e(env.name)}</a>' if link else e(env.name)
        error = f'<div class="error">{e(env.error)}</div>' if env.error else ""
        error += "".join(f'<div class="paused">paused {e(p.scope)} until {e(when(p.until))} by {e(p.by)}: '
                         f"{e(p.reason)}</div>" for p in env.pauses)
        rows.append(
            f'<tr class="env status-{env.status}" data-env="{e(env.name)}">'
            f"<td>{name}</td><td><span class=\"badge {env.status}\">{e(env.status)}</span>{error}</td>"
            f"<td>{e(env.mode or '')}</td><td><code title=\"{e(env.revision or '')}\">{e(shorten(env.revision))}</code>"
            f"</td><td>{e(when(env.checked_at))}</td><td>{env.resources}</td>"
            f'<td class="counts">{e(counts)}</td></tr>')
    return ('<table class="envs"><thead><tr><th>environment</th><th>status</th><th>mode</th><th>revision</th>'
            "<th>last pass</th><th>resources</th><th>drifts</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _diff(lines: Sequence[tuple[str, str]]) -> str:
    out = []
    for sign, text in lines:
        cls = {"@": "path", "-": "exp", "+": "act"}[sign]
        mark = "@@" if sign == "@" else sign
        out.append(f'<span class="{cls}">{e(mark)} {e(text)}</span>')
    return '<pre class="diff">' + "".join(out) + "</pre>"  # spans are blocks: no newlines


def drift_sections(groups: Sequence[EnvGroup], *, findings: Mapping[str, Sequence[TimelineRow]] | None = None) -> str:
    """Per environment: its drifts grouped by kind (a row each, its diff below), then its image findings."""
    parts = []
    for g in groups:
        env = g.env
        parts.append(f'<section class="env-detail" id="{env_id(env.name)}" data-env="{e(env.name)}">'
                     f"<h2>{e(env.name)} <span class=\"badge {env.status}\">{e(env.status)}</span></h2>")
        if env.error:
            parts.append(f'<p class="error">{e(env.error)}</p>')
        if not env.drifts:
            parts.append('<p class="none">No drift.</p>')
        for kg in g.kinds:
            parts.append(f"<h3>{e(kg.kind)} <small>{e(kg.target)} · {len(kg.drifts)}</small></h3>"
                         '<table class="drifts"><thead><tr><th>object</th><th>drift</th><th>changed by</th>'
                         "<th>since</th><th>driftd</th></tr></thead><tbody>")
            for d in kg.drifts:
                since = d.changed_at or g.first_seen.get(d.key)
                cls = {Action.REVERTED: "reverted", Action.REVERT_FAILED: "failed", Action.SKIPPED: "held"}.get(
                    d.action, "reported")
                parts.append(
                    f'<tr class="drift action-{cls}" data-object="{e(object_name(d.key))}">'
                    f"<td><code>{e(object_name(d.key))}</code></td><td>{e(d.drift)}</td>"
                    f"<td>{e(d.changed_by or '')}</td><td>{e(when(since))}</td>"
                    f'<td class="action">{e(what_driftd_did(d))}</td></tr>')
                lines = diff_lines(d)
                if lines:
                    parts.append(f'<tr class="diff-row"><td colspan="5">{_diff(lines)}</td></tr>')
            parts.append("</tbody></table>")
        rows = (findings or {}).get(env.name, ())
        if rows:
            parts.append("<h3>Image findings</h3>" + timeline_table(rows, show_env=False, cls="findings"))
        parts.append("</section>")
    return "".join(parts)


def timeline_table(rows: Sequence[TimelineRow], *, show_env: bool = True, cls: str = "timeline") -> str:
    head = "<th>time</th>" + ("<th>environment</th>" if show_env else "") + \
        "<th>event</th><th>object</th><th>revision</th><th>detail</th>"
    body = []
    for r in rows:
        detail = "; ".join(x for x in (r.drift, f"by {r.changed_by}" if r.changed_by else None, r.reason,
                                       f"actor {r.actor}" if r.actor != "driftd" else None,
                                       ", ".join(r.paths[:5]) + (" …" if len(r.paths) > 5 else "") if r.paths
                                       else None) if x)
        env = f"<td>{e(r.env)}</td>" if show_env else ""
        body.append(f'<tr class="ev ev-{e(r.event)}" data-id="{r.id}"><td>{e(when(r.ts))}</td>{env}'
                    f"<td>{e(r.event)}</td><td><code>{e(r.object or '-')}</code></td>"
                    f"<td><code>{e(shorten(r.revision))}</code></td><td>{e(detail)}</td></tr>")
    if not body:
        cols = 6 if show_env else 5
        body.append(f'<tr><td colspan="{cols}" class="none">No events.</td></tr>')
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body) + "</tbody></table>"


def summary_line(groups: Sequence[EnvGroup]) -> str:
    n_env, n_drift, n_err = totals(groups)
    return f"{n_env} environment(s), {n_drift} drift(s), {n_err} error(s)"


def render_html(report: Report, out: TextIO, *, title: str = "driftd report",
                first_seen: Mapping[tuple[str, ResourceKey], datetime] | None = None,
                events: Sequence[TimelineRow] = (), generated: datetime | None = None) -> None:
    """One self-contained HTML file (for CI artifacts and tickets)."""
    groups = group_report(report, first_seen)
    stamp = f" · generated {e(when(generated))}" if generated else ""
    timeline = f"<h2>Audit trail</h2>{timeline_table(events)}" if events else ""
    out.write(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{asset("style.css")}</style>'
        f"</head><body><header><h1>{e(title)}</h1><p>{e(summary_line(groups))}{stamp}</p></header><main>"
        f"{env_table(groups)}{drift_sections(groups)}{timeline}</main></body></html>\n")


__all__ = ["Status", "asset", "drift_sections", "e", "env_table", "render_html", "summary_line", "timeline_table"]
