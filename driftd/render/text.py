"""``driftd check`` / ``driftd sync`` output: JSON (the shared contract) and text for a terminal (a unified
diff per object, the same diff lines as the markdown and HTML reports)."""

from __future__ import annotations

import json
from typing import TextIO

from ..model import Action, Drift, EnvironmentReport, Report, Status
from ..redact import redact_report
from .document import diff_lines

# The colour of each diff line's sign: path, expected (Git), actual (live).
_SIGN_COLOR = {"@": "36", "-": "31", "+": "32"}


def _redacted(report: Report) -> Report:
    return Report(tuple(redact_report(e) for e in report.environments))


def render_json(report: Report, out: TextIO) -> None:
    json.dump(_redacted(report).to_dict(), out, indent=2, default=str)
    out.write("\n")


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text


def render_text(report: Report, out: TextIO, *, color: bool = False) -> None:
    st = _Style(color)
    report = _redacted(report)
    for env in report.environments:
        _env_text(env, out, st)
    n = sum(len(e.drifts) for e in report.environments)
    errors = sum(e.status is Status.ERROR for e in report.environments)
    out.write(f"\n{len(report.environments)} environment(s), {n} drift(s), {errors} error(s)\n")


def _env_text(env: EnvironmentReport, out: TextIO, st: _Style) -> None:
    color = {Status.IN_SYNC: "32", Status.DRIFTED: "33", Status.ERROR: "31"}[env.status]
    rev = (env.revision or "-")[:12]
    out.write(st("1", f"== {env.name}") + f"  revision {rev}  " + st(color, str(env.status))
              + f"  ({env.resources} resources)\n")
    if env.error:
        out.write(st("31", f"   error: {env.error}") + "\n")
    for p in env.pauses:
        out.write(st("33", f"   paused: {p.what} until {p.until:%Y-%m-%d %H:%M:%S}Z by {p.by}: {p.reason}") + "\n")
    for d in env.drifts:
        _drift_text(d, out, st)


def _drift_text(d: Drift, out: TextIO, st: _Style) -> None:
    k = d.key
    where = f"{k.namespace}/" if k.namespace else ""
    who = f" by {d.changed_by}" if d.changed_by else ""
    when = f" at {d.changed_at:%Y-%m-%d %H:%M:%S}" if d.changed_at else ""
    action = "" if d.action is Action.REPORTED else f" [{d.action}{': ' + d.reason if d.reason else ''}]"
    out.write(f"-- {k.target} {k.kind} {where}{k.name}: " + st("1", str(d.drift)) + f"{who}{when}{action}\n")
    if d.reason and d.action is Action.REPORTED:
        out.write(f"   note: {d.reason}\n")
    for sign, text in diff_lines(d):
        out.write(st(_SIGN_COLOR[sign], f"   {'@@' if sign == '@' else sign} {text}") + "\n")
