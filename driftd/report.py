"""Rendering of reports for the CLI: JSON (the shared contract) and text (a unified diff per object)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from .model import Action, ChangeOp, Drift, EnvironmentReport, Report, Status


def render_json(report: Report, out: TextIO) -> None:
    json.dump(report.to_dict(), out, indent=2, default=str)
    out.write("\n")


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text


def render_text(report: Report, out: TextIO, *, color: bool = False) -> None:
    st = _Style(color)
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
        what = "environment" if not p.kind else p.scope
        out.write(st("33", f"   paused: {what} until {p.until:%Y-%m-%d %H:%M:%S}Z by {p.by}: {p.reason}") + "\n")
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
    for c in d.changes:
        out.write(st("36", f"   @@ {c.path}") + (f"  ({c.changed_by})" if c.changed_by and c.changed_by != d.changed_by
                                                   else "") + "\n")
        if c.op is not ChangeOp.ADD:
            for line in _lines(c.expected):
                out.write(st("31", f"   - {line}") + "\n")
        if c.op is not ChangeOp.REMOVE:
            for line in _lines(c.actual):
                out.write(st("32", f"   + {line}") + "\n")


def _lines(v: Any) -> list[str]:
    if isinstance(v, (dict, list)):
        import yaml

        return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n").splitlines()
    return [json.dumps(v) if not isinstance(v, str) else v]
