"""A thin JSON client over kubernetes_asyncio's authenticated transport.

Objects stay plain dicts (no model classes: they are slow to build and drop unknown fields,
which would hide CRD fields from the diff). Every request is counted in
``driftd_api_requests_total{target="kubernetes",operation="<verb> <resource>",code}``.

Credentials: a kubeconfig (path/context from config, else $KUBECONFIG, else ~/.kube/config),
or the in-cluster service account, whose token file is re-read whenever it changes (kubelet
rotates projected tokens hourly).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from ...config import ClusterSettings
from ...diff.secrets import scrub_text, secret_values
from ...errors import PermissionDenied, TargetError, Throttled
from ...journal import journaled
from ...log import get_logger
from ...metrics import api_requests

log = get_logger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SA_DIR_ENV = "DRIFTD_SERVICEACCOUNT_DIR"  # overrides SA_DIR: unusual mounts, and tests outside a pod
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(TargetError):
    """The API server answered with an error status. ``reason`` is the server's Status.reason."""

    def __init__(self, status: int, reason: str, message: str, *, subject: str | None = None) -> None:
        super().__init__(message, subject=subject, retryable=status >= 500 or status in (0, 429))
        self.status = status
        self.reason = reason


class NotFound(ApiError):
    pass


class Gone(ApiError):
    """410: the resourceVersion is too old for a watch; re-list."""


class Conflict(ApiError):
    pass


class Unreachable(TargetError):
    retryable = True


class BadWatchLine(TargetError):
    """A watch stream carried a line that is not a JSON event object; the watch is restarted."""

    retryable = True


class Forbidden(PermissionDenied):
    """403: the role lacks ``verb`` (as RBAC names it) on ``resource`` (``deployments.apps``) in
    ``namespace`` (None: cluster-wide or cluster-scoped)."""

    def __init__(self, verb: str, resource: str, namespace: str | None, detail: str, *,
                 subject: str | None = None) -> None:
        where = f" in namespace {namespace}" if namespace else " cluster-wide"
        super().__init__(f"forbidden: the role lacks {verb} on {resource}{where} ({detail})", subject=subject)
        self.verb = verb
        self.resource = resource
        self.namespace = namespace


class Unauthorized(ApiError):
    """401: the credentials were refused (an expired or revoked token). The in-cluster token file
    is re-read before every request, so a retry after the kubelet rotates it succeeds."""

    retryable = True

    def __init__(self, status: int, reason: str, message: str, *, subject: str | None = None) -> None:
        super().__init__(status, reason, message, subject=subject)
        self.retryable = True


# driftd's operations -> the RBAC verb the API server checks (an SSA apply is a PATCH).
RBAC_VERBS = {"apply": "patch"}
_NAMESPACED = re.compile(r"^/apis?/(?:[^/]+/)?[^/]+/namespaces/([^/]+)/[^/]+")


_counter: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("driftd_kube_requests", default=None)


class KubeClient:
    def __init__(self, api: k8s_client.ApiClient, *, name: str, concurrency: int = 8) -> None:
        self._api = api
        self.name = name
        self._sem = anyio.Semaphore(max(1, concurrency))
        self.requests = 0  # total requests sent, for TargetResult.api_calls and the benchmark

    async def aclose(self) -> None:
        await self._api.close()

    def _count(self, operation: str, code: str) -> None:
        self.requests += 1
        mine = _counter.get()
        if mine is not None:
            mine[0] += 1
        api_requests.labels(target="kubernetes", operation=operation, code=code).inc()

    @contextlib.contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Counts the requests made by this task and the tasks it starts (not by informers running
        elsewhere on the same client): ``with client.counting() as n: ...; n[0]``."""
        n = [0]
        token = _counter.set(n)
        try:
            yield n
        finally:
            _counter.reset(token)

    async def request(self, method: str, path: str, *, verb: str, resource: str, query: Mapping[str, Any] | None = None,
                      body: Any = None, content_type: str | None = None, subject: str | None = None,
                      request_timeout: float = 60.0, accept: str = "application/json",
                      sensitive: bool = False) -> dict[str, Any]:
        """``sensitive``: the body comes from a decrypted (SOPS) file, so every value in it is kept
        out of the error this request may raise, not only the secret-like ones."""
        if method != "GET" and not (query or {}).get("dryRun"):
            # Every write is journaled here, the one place all of them pass (driftd.journal).
            async with journaled("kubernetes", subject or path, f"{method} {path}"):
                return await self._request(method, path, verb=verb, resource=resource, query=query, body=body,
                                           content_type=content_type, subject=subject,
                                           request_timeout=request_timeout, accept=accept, sensitive=sensitive)
        return await self._request(method, path, verb=verb, resource=resource, query=query, body=body,
                                   content_type=content_type, subject=subject, request_timeout=request_timeout,
                                   accept=accept, sensitive=sensitive)

    async def _request(self, method: str, path: str, *, verb: str, resource: str, query: Mapping[str, Any] | None,
                       body: Any, content_type: str | None, subject: str | None,
                       request_timeout: float, accept: str, sensitive: bool) -> dict[str, Any]:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        op = f"{verb} {resource}"
        q = [(k, _q(v)) for k, v in (query or {}).items() if v is not None]
        async with self._sem:
            try:
                resp = await self._api.call_api(path, method, query_params=q, header_params=headers, body=body,
                                                auth_settings=["BearerToken"], _preload_content=False,
                                                _request_timeout=request_timeout)
                data = await resp.read()
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                self._count(op, "error")
                raise Unreachable(f"{self.name}: {method} {path}: {type(e).__name__}: {e}", subject=subject) from e
        self._count(op, str(resp.status))
        if 200 <= resp.status < 300:
            out: dict[str, Any] = json.loads(data) if data else {}
            return out
        # The server's message may quote what was sent (an invalid env value, a Secret's data): never the
        # secret-like values of the body, in whatever error, log line or record this message ends up.
        raise _error(resp.status, data, verb, resource, subject, path=path,
                     hide=secret_values(body, sensitive=sensitive) if isinstance(body, Mapping) else ())

    async def stream(self, path: str, *, resource: str, query: Mapping[str, Any],
                     read_timeout: float) -> AsyncIterator[dict[str, Any]]:
        """A watch: one decoded event per line until the server ends it."""
        q = [(k, _q(v)) for k, v in query.items() if v is not None]
        op = f"watch {resource}"
        try:
            resp = await self._api.call_api(path, "GET", query_params=q, header_params={"Accept": "application/json"},
                                            auth_settings=["BearerToken"], _preload_content=False,
                                            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                                                   sock_read=read_timeout))
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            self._count(op, "error")
            raise Unreachable(f"{self.name}: watch {path}: {type(e).__name__}: {e}") from e
        self._count(op, str(resp.status))
        try:
            if resp.status != 200:
                raise _error(resp.status, await resp.read(), "watch", resource, None, path=path)
            while True:
                try:
                    line = await resp.content.readline()
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    raise Unreachable(f"{self.name}: watch {path} broke: {type(e).__name__}") from e
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = None
                if not isinstance(ev, dict) or not isinstance(ev.get("object", {}), dict):
                    # A proxy or a broken server sent garbage: end this watch (the informer
                    # re-establishes it from its last resourceVersion), never crash on it.
                    raise BadWatchLine(f"{self.name}: watch {path}: malformed event line "
                                       f"({len(line)} bytes): {line[:120]!r}")
                yield ev
        finally:
            resp.release()


def _q(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _error(status: int, data: bytes, verb: str, resource: str, subject: str | None, *, path: str = "",
           hide: Iterable[str] = ()) -> ApiError:
    reason, message = "", data.decode("utf-8", "replace")[:500]
    try:
        st = json.loads(data)
        reason, message = str(st.get("reason", "")), str(st.get("message", message))
    except ValueError:
        pass
    message = scrub_text(message, hide)
    if status == 403:
        m = _NAMESPACED.match(path)
        raise Forbidden(RBAC_VERBS.get(verb, verb), resource, m.group(1) if m else None, message, subject=subject)
    if status == 429:
        raise Throttled(f"throttled on {verb} {resource}: {message}", subject=subject)
    if status == 401:
        return Unauthorized(status, reason, f"unauthorized: the API server refused the credentials ({message}); "
                            "an expired token? in-cluster, the token file is re-read on every request",
                            subject=subject)
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return cls(status, reason, message, subject=subject)


async def connect(cluster: ClusterSettings) -> KubeClient:
    """An authenticated client for one configured cluster."""
    cfg = k8s_client.Configuration()
    kubeconfig = cluster.kubeconfig
    sa_dir = service_account_dir()
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and (sa_dir / "token").exists() \
            and os.environ.get("KUBERNETES_SERVICE_HOST"):
        _in_cluster(cfg, sa_dir)
    else:
        path = str(kubeconfig) if kubeconfig else (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                                                  or str(Path.home() / ".kube" / "config"))
        try:
            await k8s_config.load_kube_config(config_file=path, context=cluster.context,
                                              client_configuration=cfg, persist_config=False)
        except (k8s_config.ConfigException, OSError) as e:
            raise TargetError(f"cannot load kubeconfig {path} (context {cluster.context or 'current'}): {e}",
                              subject=f"cluster {cluster.name}") from e
    return KubeClient(k8s_client.ApiClient(configuration=cfg), name=cluster.name, concurrency=cluster.concurrency)


def service_account_dir() -> Path:
    """Where the in-cluster token, ca.crt and namespace are mounted."""
    return Path(os.environ.get(SA_DIR_ENV) or SA_DIR)


def _in_cluster(cfg: k8s_client.Configuration, sa_dir: Path) -> None:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    cfg.host = f"https://{'[' + host + ']' if ':' in host else host}:{port}"
    cfg.ssl_ca_cert = str(sa_dir / "ca.crt")
    token_file = sa_dir / "token"
    seen: dict[str, float] = {"mtime": -1.0}

    def refresh(conf: k8s_client.Configuration) -> None:
        # Re-read when the file changes: projected tokens rotate, and an expired one is a 401.
        try:
            mtime = token_file.stat().st_mtime
        except OSError:
            return
        if mtime != seen["mtime"]:
            conf.api_key["BearerToken"] = token_file.read_text().strip()
            conf.api_key_prefix["BearerToken"] = "Bearer"
            seen["mtime"] = mtime

    refresh(cfg)
    cfg.refresh_api_key_hook = refresh
