"""The web page's routes, added to the daemon's HTTP server (``server.make_app``):

  /                  every environment, its drifts with diffs, image findings, the audit timeline
                     (``?env=&object=&event=`` filter it; ``&partial=1`` returns only ``<main>``)
  /static/{name}     the page's stylesheet and script, shipped in the package (no CDN)
  /events            server-sent events: ``update`` whenever a report or the audit trail changed
  /login             with ``daemon.api_token_file``: a form taking the API token, kept as an HttpOnly,
                     SameSite=Strict cookie that the server's authentication accepts for GET (a browser
                     cannot send the bearer header); the same token, the same access rules

Rendering is in ``driftd.render`` (pure); this module only gathers the data. Secrets are masked by
the renderers (the state store never held them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio
from aiohttp import web

from .log import get_logger
from .model import EnvironmentReport, Report, ResourceKey
from .render.document import TimelineRow
from .render.html import asset
from .render.page import EVENT_KINDS, TimelineFilter, render_login, render_main, render_page
from .state import AuditEvent, EventKind, OpenDrift
from .state.timeline import timeline_rows

log = get_logger("driftd.web")

TIMELINE_WINDOW = timedelta(days=1)  # how far back the page's timeline reads
TIMELINE_ROWS = 200  # newest events shown after filtering
FINDINGS_WINDOW = timedelta(days=7)
FINDINGS_PER_ENV = 10
STREAM_TICK = 0.25  # seconds between looks at the in-process status (no I/O: cheap)
STREAM_KEEPALIVE = 15.0
MAX_STREAMS = 32  # open /events connections; more get 503 and the page falls back to polling
_STATIC = {"style.css": "text/css", "app.js": "text/javascript"}


class StatusView(Protocol):
    def reports(self) -> Sequence[EnvironmentReport]: ...


class AuditView(Protocol):
    """The state store's reads the page uses (``driftd.state.StateStore`` conforms)."""

    async def events(self, **filters: Any) -> list[AuditEvent]: ...

    async def open_drifts(self, env: str | None = None) -> list[OpenDrift]: ...


class Token(Protocol):
    """``server.TokenFile``: compares in constant time, re-reads a rotated file."""

    def matches(self, presented: str) -> bool: ...


class Web:
    def __init__(self, status: StatusView, audit: AuditView | None, *, token: Token | None = None,
                 cookie: str = "driftd_session") -> None:
        self.status = status
        self.audit = audit
        self.token = token
        self.cookie = cookie
        self.streams = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/events", self.stream)
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)

    @staticmethod
    def _next(raw: str) -> str:
        """Only a path on this server: no open redirect. Browsers drop tabs and newlines from a
        Location and read a backslash as a slash, so a slash, a tab, then ``/evil.example`` means ``//evil.example``:
        any control character, space or backslash refuses it, and what is left must parse with no
        scheme and no host."""
        if not raw.startswith("/") or any(c <= " " or c in "\\\x7f" for c in raw):
            return "/"
        parts = urlsplit(raw)
        return "/" if parts.scheme or parts.netloc or raw.startswith("//") else raw

    async def login_form(self, request: web.Request, *, failed: bool = False) -> web.Response:
        nxt = self._next(request.query.get("next", "/"))
        if self.token is None:
            raise web.HTTPSeeOther(nxt)
        return web.Response(text=render_login(nxt, failed=failed), content_type="text/html",
                            status=401 if failed else 200, headers=_NO_STORE)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        nxt = self._next(str(form.get("next", "/")))
        presented = str(form.get("token", "")).strip()
        if self.token is None:
            raise web.HTTPSeeOther(nxt)
        if not presented or not self.token.matches(presented):
            log.info("web.login_refused", remote=request.remote)
            return await self.login_form(request, failed=True)
        resp = web.HTTPSeeOther(nxt)
        secure = request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"
        resp.set_cookie(self.cookie, presented, httponly=True, samesite="Strict", path="/", secure=secure,
                        max_age=12 * 3600)
        raise resp

    async def _data(self, filt: TimelineFilter) -> tuple[list[TimelineRow], dict[str, list[TimelineRow]],
                                                        dict[tuple[str, ResourceKey], datetime]]:
        if self.audit is None:
            return [], {}, {}
        now = datetime.now(UTC)
        where: dict[str, Any] = {"since": now - TIMELINE_WINDOW}
        if filt.env:
            where["env"] = filt.env
        if filt.event in EVENT_KINDS:
            where["event"] = EventKind(filt.event)
        events = await self.audit.events(**where)
        rows = [r for r in timeline_rows(events) if filt.matches(r)][-TIMELINE_ROWS:]
        findings: dict[str, list[TimelineRow]] = {}
        for r in timeline_rows(await self.audit.events(event=EventKind.IMAGE, since=now - FINDINGS_WINDOW)):
            findings.setdefault(r.env, []).append(r)
        findings = {env: list(reversed(rs[-FINDINGS_PER_ENV:])) for env, rs in findings.items()}
        first = {(d.env, d.key): d.first_seen for d in await self.audit.open_drifts()}
        return rows, findings, first

    async def page(self, request: web.Request) -> web.Response:
        q = request.query
        filt = TimelineFilter(env=q.get("env", "")[:200], object=q.get("object", "")[:200],
                              event=q.get("event", "") if q.get("event", "") in EVENT_KINDS else "")
        report = Report(tuple(self.status.reports()))
        rows, findings, first = await self._data(filt)
        now = datetime.now(UTC)
        if q.get("partial"):
            html = render_main(report, timeline=rows, findings=findings, first_seen=first, filt=filt, generated=now)
        else:
            html = render_page(report, timeline=rows, findings=findings, first_seen=first, filt=filt, generated=now)
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(text=asset(name), content_type=_STATIC[name],
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    def fingerprint(self) -> str:
        """Changes whenever a pass published a report (a pass records its events first)."""
        h = hashlib.sha256()
        for r in self.status.reports():
            h.update(repr((r.name, r.status, r.revision, r.checked_at, r.error,
                           [(str(d.key), str(d.action), len(d.changes)) for d in r.drifts])).encode())
        return h.hexdigest()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if self.streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text="too many open event streams\n")
        self.streams += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_NO_STORE,
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 2000\n\n")
            last = self.fingerprint()
            quiet = 0.0
            while True:
                await anyio.sleep(STREAM_TICK)
                now = self.fingerprint()
                if now != last:
                    last = now
                    quiet = 0.0
                    await resp.write(b"event: update\ndata: " + now[:16].encode() + b"\n\n")
                else:
                    quiet += STREAM_TICK
                    if quiet >= STREAM_KEEPALIVE:
                        quiet = 0.0
                        await resp.write(b": keepalive\n\n")
        except ConnectionError:  # the browser went away
            return resp
        finally:
            self.streams -= 1


_NO_STORE = {"Cache-Control": "no-store"}
