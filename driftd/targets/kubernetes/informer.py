"""LIST then WATCH one resource type in one scope, keeping a local cache of its objects.

- ``synced`` turns true after the first complete LIST; until then the cache must not be used
  to call anything ``missing``.
- Bookmarks (``allowWatchBookmarks``) keep the resourceVersion fresh, so a reconnect rarely
  needs a re-list; ``410 Gone`` triggers one. The re-listed set replaces the cache in one step
  (never an empty cache in between) and differences are reported as events.
- When the API server goes away the informer reconnects with capped exponential backoff and
  keeps serving its last cache (still ``synced``: a restart is not a deletion).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ...errors import DriftdError
from ...log import get_logger
from .client import Gone, KubeClient
from .discovery import ResourceInfo

log = get_logger(__name__)

ObjKey = tuple[str, str]  # (namespace, name)
Callback = Callable[[str, Mapping[str, Any]], None]  # (event type, object)
PAGE = 500


async def list_all(client: KubeClient, info: ResourceInfo, namespace: str | None) -> tuple[dict[ObjKey, Any], str]:
    """One paginated LIST. Returns the objects and the list's resourceVersion."""
    objs: dict[ObjKey, Any] = {}
    cont: str | None = None
    rv = ""
    while True:
        doc = await client.request("GET", info.path(namespace), verb="list", resource=info.label,
                                   query={"limit": PAGE, "continue": cont})
        for o in doc.get("items") or ():
            o.setdefault("apiVersion", info.api_version)
            o.setdefault("kind", info.kind)
            m = o.get("metadata") or {}
            objs[(str(m.get("namespace") or ""), str(m.get("name")))] = o
        meta = doc.get("metadata") or {}
        rv = str(meta.get("resourceVersion") or rv)
        cont = meta.get("continue") or None
        if not cont:
            return objs, rv


class Informer:
    def __init__(self, client: KubeClient, info: ResourceInfo, namespace: str | None = None, *,
                 on_event: Callback | None = None, watch_timeout: int = 300,
                 backoff_max: float = 30.0) -> None:
        self.client = client
        self.info = info
        self.namespace = namespace
        self.on_event = on_event
        self.objects: dict[ObjKey, Any] = {}
        self.synced = False
        self.synced_event = anyio.Event()
        self.resource_version = ""
        self.relists = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self.failing: str | None = None  # an unexpected error since the last good LIST: the cache is suspect
        self._watch_timeout = watch_timeout
        self._backoff_max = backoff_max

    def __repr__(self) -> str:
        return f"Informer({self.info.label}, ns={self.namespace or '*'}, synced={self.synced})"

    async def run(self) -> None:
        """Runs until cancelled."""
        delay = 0.5
        while True:
            try:
                if not self.resource_version:
                    await self._relist()
                await self._watch()
                delay = 0.5
            except Gone:
                log.info("informer.gone", resource=self.info.label, namespace=self.namespace)
                self.resource_version = ""  # re-list on the next turn
            except DriftdError as e:
                self.last_error = str(e)
                self.reconnects += 1
                log.warning("informer.disconnected", resource=self.info.label, namespace=self.namespace,
                            error=str(e), retry_in=round(delay, 1))
                await anyio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._backoff_max)
            except Exception as e:
                # A bug or an event this code did not expect: this informer goes to error (check()
                # reports its scope unknown, not drifted) and retries with a fresh LIST; the other
                # informers and the environments that do not read this one are not affected.
                self.failing = f"{type(e).__name__}: {e}"
                self.last_error = self.failing
                self.reconnects += 1
                self.resource_version = ""
                log.exception("informer.crashed", resource=self.info.label, namespace=self.namespace,
                              retry_in=round(delay, 1))
                await anyio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._backoff_max)

    async def _relist(self) -> None:
        objs, rv = await list_all(self.client, self.info, self.namespace)
        old, self.objects = self.objects, objs
        self.resource_version = rv
        self.relists += 1
        if self.synced and self.on_event:
            for k, o in objs.items():
                prev = old.get(k)
                if prev is None or _rv(prev) != _rv(o):
                    self.on_event("ADDED" if prev is None else "MODIFIED", o)
            for k, o in old.items():
                if k not in objs:
                    self.on_event("DELETED", o)
        self.synced = True
        self.failing = None
        self.synced_event.set()

    async def _watch(self) -> None:
        query = {"watch": True, "resourceVersion": self.resource_version, "allowWatchBookmarks": True,
                 "timeoutSeconds": self._watch_timeout}
        async for ev in self.client.stream(self.info.path(self.namespace), resource=self.info.label, query=query,
                                           read_timeout=self._watch_timeout + 30):
            typ = ev.get("type")
            obj = ev.get("object") or {}
            if typ == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(410, "Expired", str(obj.get("message", "too old resource version")))
                log.warning("informer.watch_error", resource=self.info.label, status=obj.get("message"))
                return
            rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if rv:
                self.resource_version = rv
            if typ == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.info.api_version)
            obj.setdefault("kind", self.info.kind)
            m = obj.get("metadata") or {}
            k = (str(m.get("namespace") or ""), str(m.get("name")))
            if typ == "DELETED":
                self.objects.pop(k, None)
            else:
                self.objects[k] = obj
            if self.on_event and typ:
                self.on_event(str(typ), obj)


def _rv(o: Mapping[str, Any]) -> str:
    return str((o.get("metadata") or {}).get("resourceVersion") or "")
