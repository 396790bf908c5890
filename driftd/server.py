"""driftd's HTTP face (aiohttp, on ``daemon.listen``): metrics, probes, and the report as JSON.

Routes:
  /metrics                         Prometheus text format, driftd's own registry
  /healthz                         200 while the event loop answers
  /readyz                          200 once config is loaded and every environment was checked once
  /api/v1/environments             every environment's latest report (secrets redacted)
  /api/v1/environments/{name}      one environment
  /api/v1/replicas                 with [coordination]: this replica, the live members, who holds which
                                   environment (404 without)
  /api/v1/environments/{name}/objects/{target}/{kind}/{namespace or _}/{object}
                                   one object's drift (alerts' generatorURL points here)
  /, /static/{name}, /events       the web page, its assets and its update stream (driftd.web)
  POST /hooks/git                  push webhooks from GitHub, GitLab, Gitea/Forgejo (driftd.hooks): open, each
                                   request authenticated by its provider's signature or token instead

Exposure (docs/security.md):
- every path except :data:`OPEN_PATHS` requires ``Authorization: Bearer <token>`` when
  ``daemon.api_token_file`` is set; without it driftd refuses to listen on anything but loopback
  (:func:`check_exposure`). The check is a middleware over the whole app, so a route added later
  is protected by default: add to :data:`OPEN_PATHS` only endpoints that must answer unauthenticated
  (probes, scrapes) or that authenticate otherwise (a webhook with its own signature);
- a connection must deliver a request's headers within ``header_timeout`` of opening (or of the
  previous response), and its body within ``body_timeout``; at most ``max_connections`` are open
  at once (more are closed on accept), so half-open or trickling clients cannot hold the server.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote

import anyio
import anyio.abc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import DaemonSettings
from .errors import DriftdError
from .hooks import GitHooks
from .log import get_logger
from .metrics import REGISTRY, http_connections_open, http_connections_refused
from .model import EnvironmentReport
from .redact import redact_drift, redact_report
from .web import AuditView, Web

log = get_logger("driftd.server")


class StatusView(Protocol):
    """engine.protocols.StatusView, restated here: the server sits below the engine."""

    def reports(self) -> Sequence[EnvironmentReport]: ...

    def ready(self) -> bool: ...


_STATUS: web.AppKey[StatusView] = web.AppKey("status", StatusView)

# Paths that answer without the bearer token. Everything else (the API, and any page or endpoint
# added later) requires it: default deny, so a new route cannot be exposed by forgetting a list.
OPEN_PATHS: frozenset[str] = frozenset({"/metrics", "/healthz", "/readyz", "/hooks/git", "/login",
                                       "/static/style.css"})
# A browser cannot send the bearer header: the web page's /login form checks the same token and sets
# it as this cookie (HttpOnly, SameSite=Strict), accepted for GET/HEAD only (no cross-site writes).
BROWSER_COOKIE = "driftd_session"


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0  # connect (or end of the previous response) -> request headers complete
    body_timeout: float = 30.0  # headers -> body complete
    max_connections: int = 256  # open at once; more are closed as soon as they are accepted
    max_body: int = 1024 * 1024  # bytes of a request body


def is_loopback(host: str) -> bool:
    """``host`` as written in ``daemon.listen``: only literal loopback addresses and ``localhost`` count."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or "" = every interface) may resolve to anything: not loopback


def check_exposure(settings: DaemonSettings) -> None:
    """Refuse a listener beyond loopback without an API token: the report names every drifted object."""
    if settings.api_token_file is None and not is_loopback(settings.listen_host):
        raise DriftdError(
            f"refusing to serve the API on {settings.listen!r} without authentication: set daemon.api_token_file "
            "to a file holding a bearer token (the API, and every page but /metrics, /healthz and /readyz, "
            "then requires it), or listen on 127.0.0.1", subject="daemon.listen")


class TokenFile:
    """The bearer token, re-read when the file changes (rotation without a restart). Fails closed: a file
    that becomes unreadable or empty admits nobody until it is fixed."""

    MIN_LENGTH = 16

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._token: bytes | None = None
        self._load(strict=True)

    def _load(self, *, strict: bool) -> None:
        try:
            st = self.path.stat()
            if st.st_mtime == self._mtime:
                return
            token = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            if strict:
                raise DriftdError(f"cannot read the API token: {type(e).__name__}: {getattr(e, 'strerror', '') or e}",
                                  subject=f"daemon.api_token_file {self.path}") from e
            log.error("server.token_unreadable", file=str(self.path), error=type(e).__name__)
            self._token, self._mtime = None, None
            return
        if len(token) < self.MIN_LENGTH or any(c.isspace() for c in token):
            problem = (f"the API token must be one word of at least {self.MIN_LENGTH} characters "
                       "(generate one with: openssl rand -hex 32)")
            if strict:
                raise DriftdError(problem, subject=f"daemon.api_token_file {self.path}")
            log.error("server.token_invalid", file=str(self.path), problem=problem)
            self._token, self._mtime = None, None
            return
        self._token, self._mtime = token.encode(), st.st_mtime

    def matches(self, presented: str) -> bool:
        self._load(strict=False)
        if self._token is None:
            return False
        return hmac.compare_digest(self._token, presented.encode("utf-8", "replace"))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authentication(token: TokenFile | None, open_paths: frozenset[str] = OPEN_PATHS) -> Any:
    """A middleware: with a token, every path outside ``open_paths`` requires ``Authorization: Bearer``."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None or request.path in open_paths:
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.matches(presented.strip()):
            return await handler(request)
        cookie = request.cookies.get(BROWSER_COOKIE)
        if cookie and request.method in ("GET", "HEAD") and token.matches(cookie):
            return await handler(request)
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
        return web.Response(status=401, text="401: a bearer token is required (Authorization: Bearer <token>)\n",
                            headers={"WWW-Authenticate": 'Bearer realm="driftd"'})

    return authenticate


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, indent=2, default=str) + "\n", status=status,
                        content_type="application/json")


def _find(request: web.Request) -> EnvironmentReport | None:
    name = request.match_info["name"]
    return next((r for r in request.app[_STATUS].reports() if r.name == name), None)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    if request.app[_STATUS].ready():
        return web.Response(text="ready\n")
    return web.Response(text="not ready: not every environment has been checked yet\n", status=503)


def _replicas_of(status: StatusView) -> Mapping[str, object] | None:
    fn = getattr(status, "replicas", None)  # optional: only the engine's view with [coordination] has it
    return None if fn is None else cast("Mapping[str, object] | None", fn())


async def _environments(request: web.Request) -> web.Response:
    status = request.app[_STATUS]
    body: dict[str, Any] = {"environments": [redact_report(r).to_dict() for r in status.reports()]}
    replicas = _replicas_of(status)
    if replicas is not None:
        # Each replica reports the environments it holds; "replicas" says who holds the others.
        holder = replicas.get("identity")
        for env in body["environments"]:
            env["holder"] = holder
        body["replicas"] = replicas
    return _json(body)


async def _replicas(request: web.Request) -> web.Response:
    replicas = _replicas_of(request.app[_STATUS])
    if replicas is None:
        return _json({"error": "no [coordination]: this is the only replica"}, 404)
    return _json(replicas)


async def _environment(request: web.Request) -> web.Response:
    r = _find(request)
    if r is None:
        replicas = _replicas_of(request.app[_STATUS])
        holders = replicas.get("holders") if replicas is not None else None
        name = request.match_info["name"]
        if isinstance(holders, Mapping) and name in holders:
            return _json({"error": f"environment {name!r} is held by another replica",
                          "holder": holders[name]}, 404)
        return _json({"error": f"no environment named {name!r}"}, 404)
    return _json(redact_report(r).to_dict())


async def _object(request: web.Request) -> web.Response:
    r = _find(request)
    if r is None:
        return _json({"error": f"no environment named {request.match_info['name']!r}"}, 404)
    m = request.match_info
    ns = "" if m["namespace"] == "_" else m["namespace"]
    drift = next((d for d in r.drifts if str(d.key.target) == m["target"] and d.key.kind == m["kind"]
                  and d.key.namespace == ns and d.key.name == m["object"]), None)
    return _json({
        "environment": r.name,
        "revision": r.revision,
        "checked_at": r.to_dict().get("checked_at"),
        "object": {"target": m["target"], "kind": m["kind"], "namespace": ns, "name": m["object"]},
        # None: not drifted at the last check (in sync, or not an object driftd knows).
        "drift": redact_drift(drift).to_dict() if drift is not None else None,
    })


def make_app(status: StatusView, *, token: TokenFile | None = None, limits: ServerLimits = ServerLimits(),
             guard: ConnectionGuard | None = None, audit: AuditView | None = None,
             hooks: GitHooks | None = None) -> web.Application:
    middlewares = [authentication(token)]
    if guard is not None:
        middlewares.insert(0, guard.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=limits.max_body)
    app[_STATUS] = status
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/v1/environments", _environments)
    app.router.add_get("/api/v1/replicas", _replicas)
    app.router.add_get("/api/v1/environments/{name}", _environment)
    app.router.add_get("/api/v1/environments/{name}/objects/{target}/{kind}/{namespace}/{object}", _object)
    Web(status, audit, token=token, cookie=BROWSER_COOKIE).add_routes(app)
    if hooks is not None:
        hooks.add_routes(app)
    return app


# --- connection limits -------------------------------------------------------------------------------


class ConnectionGuard:
    """Counts connections and times out the ones that do not deliver a request.

    aiohttp has no header or body read timeout of its own (a client that sends half a request line
    holds its connection for the hour-long keep-alive), so each connection is wrapped in
    :class:`_Guarded`: a timer armed on connect and after each response closes it unless the next
    request's headers arrive (the middleware sees the request) in time; the middleware reads the body
    under its own timeout before any handler runs.
    """

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.open = 0
        self._by_handler: dict[int, _Guarded] = {}

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self._by_handler.get(id(request.protocol))
        if conn is not None:
            conn.begin()
        try:
            if request.body_exists:
                try:
                    with anyio.fail_after(self.limits.body_timeout):
                        await request.read()  # cached: the handler's own read() returns it
                except TimeoutError:
                    if conn is not None:
                        conn.abort()
                    return web.Response(status=408, text="408: request body not received in time\n")
            return await handler(request)
        finally:
            if conn is not None:
                conn.end()


class _Guarded(asyncio.Protocol):
    """Delegates to aiohttp's protocol, adding the connection cap and the header timeout."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        g = self._guard
        if g.open >= g.limits.max_connections:
            http_connections_refused.inc()
            # never handed to aiohttp, so connection_lost below has nothing to undo
            cast(asyncio.Transport, transport).abort()
            return
        g.open += 1
        http_connections_open.inc()
        self._transport = cast(asyncio.Transport, transport)
        self._inner = self._make_inner()
        g._by_handler[id(self._inner)] = self
        self._inner.connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._disarm()
        self._guard.open -= 1
        http_connections_open.dec()
        self._guard._by_handler.pop(id(self._inner), None)
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def begin(self) -> None:
        self._in_flight += 1
        self._disarm()

    def end(self) -> None:
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._arm()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._in_flight <= 0:
            self.abort()


class _GuardedSite(web.TCPSite):
    """TCPSite whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port, backlog=guard.limits.max_connections)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._guard.protocol_factory(server), self._host, self._port,
                                                backlog=self._backlog)


async def serve(settings: DaemonSettings, status: StatusView, *, limits: ServerLimits = ServerLimits(),
                audit: AuditView | None = None, hooks: GitHooks | None = None,
                task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled. ``task_status.started()`` once the port is bound (bind and token errors raise)."""
    check_exposure(settings)
    token = TokenFile(settings.api_token_file) if settings.api_token_file is not None else None
    guard = ConnectionGuard(limits)
    runner = web.AppRunner(make_app(status, token=token, limits=limits, guard=guard, audit=audit, hooks=hooks),
                           access_log=None,
                           handle_signals=False, shutdown_timeout=1.0, keepalive_timeout=limits.header_timeout)
    await runner.setup()
    try:
        site = _GuardedSite(runner, settings.listen_host, settings.listen_port, guard)
        try:
            await site.start()
        except OSError as e:
            raise DriftdError(f"cannot listen: {e.strerror or e}", subject=f"daemon.listen {settings.listen}") from e
        log.info("server.listening", address=settings.listen, authenticated=token is not None)
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
