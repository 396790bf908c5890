"""Informers shared by every environment that watches the same cluster, reference-counted.

Each ``hold()`` call (one per environment watch, lasting until it is cancelled) takes a reference
on the informer of every scope it needs, creating the missing ones. An informer stops only when
its last holder lets go, so an environment restarting its watch on a new revision never takes
away an informer another environment still reads.

An informer's task runs inside the task group of one holder. When that holder leaves while
others still hold the informer, another holder adopts it: it resumes the watch from the cached
resourceVersion (no re-list, the cache stays whole and ``synced``). The two runs never overlap:
the adopter waits until the previous run has ended. An informer nobody holds lingers for a while,
not running: a watch restarted a moment later (the daemon cancels the old watch, then starts the
new one) picks it up and resumes instead of re-listing; check() never reads it meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from ...model import ResourceKey, TargetKind
from .client import KubeClient
from .discovery import ResourceInfo
from .informer import Informer

ScopeKey = tuple[str, str | None]  # (resource path, namespace or None)
OnChange = Callable[[ResourceKey], None]
LINGER = 30.0  # seconds an unheld informer's cache is kept for a quick re-acquire


def _ended() -> anyio.Event:
    e = anyio.Event()
    e.set()
    return e


@dataclass(eq=False)
class _Shared:
    informer: Informer
    refs: int = 0
    runner: anyio.CancelScope | None = None  # the task running it now, None between runners
    stopped: anyio.Event = field(default_factory=_ended)  # set once the last runner's task has ended
    subscribers: list[OnChange] = field(default_factory=list)  # one per holder (may repeat)
    released_at: float = 0.0


class SharedInformers:
    def __init__(self) -> None:
        self._shared: dict[ScopeKey, _Shared] = {}
        self._orphaned_event: anyio.Event | None = None  # set, then replaced, when a held informer loses its runner
        self._subscribers: list[OnChange] = []  # subscribe(): every event of every informer

    def subscribe(self, callback: OnChange) -> None:
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def get(self, info: ResourceInfo, namespace: str | None) -> Informer | None:
        """The informer of a scope, only while someone holds it (an unheld one is not kept current)."""
        sh = self._shared.get((info.path(), namespace))
        return sh.informer if sh is not None and sh.refs > 0 else None

    def held(self) -> list[Informer]:
        return [sh.informer for sh in self._shared.values() if sh.refs > 0]

    def refs(self, info: ResourceInfo, namespace: str | None) -> int:
        sh = self._shared.get((info.path(), namespace))
        return sh.refs if sh is not None else 0

    async def hold(self, client: KubeClient, scopes: Iterable[tuple[ResourceInfo, str | None]], on_change: OnChange,
                   *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold (and run, or share the running of) an informer per scope until cancelled.
        ``task_status.started()`` once every one of them has synced."""
        self._purge()
        keys: list[ScopeKey] = []
        for info, ns in scopes:
            k = (info.path(), ns)
            sh = self._shared.get(k)
            if sh is None:
                sh = self._shared[k] = _Shared(Informer(client, info, ns, on_event=self._fanout(k)))
            sh.refs += 1
            sh.subscribers.append(on_change)
            keys.append(k)
        mine: set[anyio.CancelScope] = set()
        try:
            async with anyio.create_task_group() as tg:
                self._adopt(tg, keys, mine)
                # Adopting goes on while waiting for the sync too: a holder that leaves before its
                # informer synced hands it over like any other.
                tg.start_soon(self._keep_running, tg, keys, mine)
                for k in keys:
                    await self._shared[k].informer.synced_event.wait()
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._release(keys, on_change, mine)

    # --- internals -------------------------------------------------------------------------------

    def _orphaned(self) -> anyio.Event:
        # Created on first use: an Event needs the running event loop, a target may be built before.
        if self._orphaned_event is None:
            self._orphaned_event = anyio.Event()
        return self._orphaned_event

    async def _keep_running(self, tg: anyio.abc.TaskGroup, keys: list[ScopeKey], mine: set[anyio.CancelScope]
                            ) -> None:
        while True:
            # Take the event before looking: a runner lost after the look sets this very event.
            orphaned = self._orphaned()
            self._adopt(tg, keys, mine)
            await orphaned.wait()

    def _adopt(self, tg: anyio.abc.TaskGroup, keys: list[ScopeKey], mine: set[anyio.CancelScope]) -> None:
        for k in keys:
            sh = self._shared[k]
            if sh.runner is None:
                cs = anyio.CancelScope()
                prev, done = sh.stopped, anyio.Event()
                sh.runner, sh.stopped = cs, done
                mine.add(cs)
                tg.start_soon(self._run, sh.informer, cs, prev, done)

    @staticmethod
    async def _run(informer: Informer, cs: anyio.CancelScope, prev: anyio.Event, done: anyio.Event) -> None:
        try:
            with cs:
                await prev.wait()  # never two runs of one informer at once
                await informer.run()
        finally:
            done.set()

    def _release(self, keys: list[ScopeKey], on_change: OnChange, mine: set[anyio.CancelScope]) -> None:
        orphaned = False
        now = time.monotonic()
        for k in keys:
            sh = self._shared.get(k)
            if sh is None:
                continue
            sh.refs -= 1
            if on_change in sh.subscribers:
                sh.subscribers.remove(on_change)
            if sh.runner is not None and (sh.runner in mine or sh.refs == 0):
                sh.runner.cancel()
                sh.runner = None
                orphaned = orphaned or sh.refs > 0
            if sh.refs == 0:
                sh.released_at = now
        if orphaned and self._orphaned_event is not None:
            ev, self._orphaned_event = self._orphaned_event, None
            ev.set()
        self._purge()

    def _purge(self) -> None:
        now = time.monotonic()
        for k in [k for k, sh in self._shared.items() if sh.refs == 0 and now - sh.released_at > LINGER]:
            del self._shared[k]

    def _fanout(self, k: ScopeKey) -> Callable[[str, Mapping[str, Any]], None]:
        def on_event(_typ: str, obj: Mapping[str, Any]) -> None:
            sh = self._shared.get(k)
            if sh is None or sh.refs == 0:
                return
            info = sh.informer.info
            m = obj.get("metadata") or {}
            key = ResourceKey(TargetKind.KUBERNETES, info.kind, str(m.get("name")), str(m.get("namespace") or ""),
                              info.api_version)
            for cb in dict.fromkeys([*sh.subscribers, *self._subscribers]):
                cb(key)
        return on_event
