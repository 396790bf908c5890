"""The daemon's web page at ``/``: every environment, each drift with its diff, image findings and the
audit timeline. Server-rendered HTML: the tables and the timeline's filter form work without
JavaScript; the shipped script (``/static/app.js``) only keeps the page current (server-sent events,
polling as a fallback) by re-fetching ``<main>``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..model import Report, ResourceKey
from .document import TimelineRow, group_report, when
from .html import drift_sections, e, env_table, summary_line, timeline_table

EVENT_KINDS = ("detected", "reverted", "revert_failed", "would_revert", "skipped", "resolved", "brake", "image",
               "paused", "resumed")


@dataclass(frozen=True)
class TimelineFilter:
    env: str = ""
    object: str = ""  # a substring of Kind/namespace/name, case-insensitive
    event: str = ""

    def matches(self, r: TimelineRow) -> bool:
        return ((not self.env or r.env == self.env) and (not self.event or r.event == self.event)
                and (not self.object or self.object.lower() in r.object.lower()))


def _filter_form(f: TimelineFilter, envs: Sequence[str]) -> str:
    def options(values: Sequence[str], chosen: str, every: str) -> str:
        opts = [f'<option value="">{e(every)}</option>']
        opts += [f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(v)}</option>' for v in values]
        return "".join(opts)

    return ('<form class="filters" method="get" action="/#timeline">'
            f'<label>environment<select name="env">{options(envs, f.env, "all")}</select></label>'
            f'<label>object<input name="object" value="{e(f.object)}" placeholder="Kind/namespace/name"></label>'
            f'<label>event<select name="event">{options(EVENT_KINDS, f.event, "all")}</select></label>'
            '<button type="submit">filter</button></form>')


def render_main(report: Report, *, timeline: Sequence[TimelineRow], findings: Mapping[str, Sequence[TimelineRow]],
                first_seen: Mapping[tuple[str, ResourceKey], datetime] | None = None,
                filt: TimelineFilter = TimelineFilter(), generated: datetime | None = None) -> str:
    """The inside of ``<main>``: also what the script re-fetches (``/?partial=1``) to update the page."""
    groups = group_report(report, first_seen)
    envs = [g.env.name for g in groups]
    rows = [r for r in timeline if filt.matches(r)]
    return (f'<p class="summary" data-generated="{e(when(generated))}">{e(summary_line(groups))}</p>'
            f"{env_table(groups)}{drift_sections(groups, findings=findings)}"
            f'<section id="timeline"><h2>Audit trail</h2>{_filter_form(filt, envs)}'
            f"{timeline_table(list(reversed(rows)))}</section>")


def render_page(report: Report, *, timeline: Sequence[TimelineRow], findings: Mapping[str, Sequence[TimelineRow]],
                first_seen: Mapping[tuple[str, ResourceKey], datetime] | None = None,
                filt: TimelineFilter = TimelineFilter(), generated: datetime | None = None,
                refresh_without_js: int = 15) -> str:
    main = render_main(report, timeline=timeline, findings=findings, first_seen=first_seen, filt=filt,
                       generated=generated)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>driftd</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/static/style.css">'
            # Without JavaScript the page still refreshes itself, more slowly.
            f'<noscript><meta http-equiv="refresh" content="{refresh_without_js}"></noscript>'
            '<script src="/static/app.js" defer></script></head><body>'
            '<header><h1>driftd</h1><p><span id="live">static</span></p></header>'
            f'<main id="main">{main}</main></body></html>\n')


def render_login(next_path: str, *, failed: bool = False) -> str:
    """The form a browser uses to present the API token (``daemon.api_token_file``) once."""
    problem = '<p class="error">That token is not valid.</p>' if failed else ""
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>driftd: sign in</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="stylesheet" href="/static/style.css"></head><body><header><h1>driftd</h1>'
            "<p>This daemon requires its API token (daemon.api_token_file).</p></header><main>"
            f'{problem}<form class="filters" method="post" action="/login">'
            f'<input type="hidden" name="next" value="{e(next_path)}">'
            '<label>API token<input type="password" name="token" autocomplete="current-password" required></label>'
            '<button type="submit">sign in</button></form></main></body></html>\n')
