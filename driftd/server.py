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
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import anyio
import anyio.abc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import DaemonSettings
from .errors import DriftdError
from .log import get_logger
from .metrics import REGISTRY
from .model import EnvironmentReport
from .redact import redact_drift, redact_report

log = get_logger("driftd.server")


class StatusView(Protocol):
    """engine.protocols.StatusView, restated here: the server sits below the engine."""

    def reports(self) -> Sequence[EnvironmentReport]: ...

    def ready(self) -> bool: ...


_STATUS: web.AppKey[StatusView] = web.AppKey("status", StatusView)


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


def make_app(status: StatusView) -> web.Application:
    app = web.Application()
    app[_STATUS] = status
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/v1/environments", _environments)
    app.router.add_get("/api/v1/replicas", _replicas)
    app.router.add_get("/api/v1/environments/{name}", _environment)
    app.router.add_get("/api/v1/environments/{name}/objects/{target}/{kind}/{namespace}/{object}", _object)
    return app


async def serve(settings: DaemonSettings, status: StatusView, *,
                task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled. ``task_status.started()`` once the port is bound (bind errors raise)."""
    runner = web.AppRunner(make_app(status), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.listen_host, settings.listen_port)
        try:
            await site.start()
        except OSError as e:
            raise DriftdError(f"cannot listen: {e.strerror or e}", subject=f"daemon.listen {settings.listen}") from e
        log.info("server.listening", address=settings.listen)
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
