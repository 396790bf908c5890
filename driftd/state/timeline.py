"""Audit events as the renderers' timeline rows (the render layer must not know the state store)."""

from __future__ import annotations

from collections.abc import Iterable

from ..render.document import TimelineRow, object_name
from .records import AuditEvent


def timeline_rows(events: Iterable[AuditEvent]) -> list[TimelineRow]:
    return [TimelineRow(id=ev.id or 0, ts=ev.ts, env=ev.env, event=str(ev.event),
                        object=object_name(ev.key) if ev.key else "", revision=ev.revision,
                        drift=str(ev.drift) if ev.drift else None, reason=ev.reason, changed_by=ev.changed_by,
                        actor=ev.actor, paths=tuple(c.path for c in ev.changes))
            for ev in events]
