"""Rendering of reports and of the web page (pure: plain data in, text out; no client library).

- ``document``: the report regrouped by environment and kind, each change as diff lines, the
  audit timeline's rows (``TimelineRow``: the state layer converts its events to these).
- ``markdown`` / ``html``: ``driftd report`` for pull-request comments, CI artifacts and tickets.
- ``page``: the daemon's web page at ``/`` (server-rendered tables that work without JavaScript).

Every entry point masks secrets first (``driftd.redact``), whatever the caller already did.
"""

from .document import TimelineRow, group_report
from .html import render_html
from .markdown import render_markdown

__all__ = ["TimelineRow", "group_report", "render_html", "render_markdown"]
