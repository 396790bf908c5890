"""Replicas sharing environments through leases (``[coordination]``).

Every replica keeps a *membership* lease of its own renewed, lists the group's leases every
``poll_interval``, and computes with rendezvous hashing over the live members which environments
it should hold. It acts on an environment only while it holds that environment's lease:

- **acquire**: only the rendezvous owner tries, and only when the lease is free (released, ours
  from a previous life, or not renewed for a whole duration as far as we watched it). The write is
  a compare-and-swap on the version read, so of two replicas that both think they own it, one wins.
- **renew** every ``renew_interval`` (a third of the duration), publishing the handover state (the
  open alerts and their ``startsAt``) for whoever holds it next.
- **stop acting before expiry**: the lease counts as ours until ``sent + duration - margin`` where
  ``sent`` is when the last successful renewal was *sent*; with ``guard`` (one renew interval) left,
  the environment is given up (``lost``) even though the lease has not expired, so a pass never
  starts that could outlive the lease. Others only take it after watching it unchanged for the
  whole duration, which starts after our write reached the server: the two windows cannot overlap.
- **hand over** when another live member becomes the owner (a replica joined): the worker is
  stopped first (in-flight reverts recorded), then the lease is written released so the new
  owner takes it at its next poll instead of waiting for an expiry.
- On shutdown every held lease is released the same way, and the membership lease too.

A dead replica's environments are therefore taken over within ``lease_duration + poll_interval``
plus the new holder's first pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import anyio
import anyio.abc

from .. import metrics
from ..config import CoordinationSettings
from ..errors import DriftdError
from ..log import get_logger
from ..policy.leases import LeaseKind, LeaseRecord, Observer, lease_name, live_members
from ..policy.rendezvous import owner
from .protocols import LeaseStore, ShardListener

log = get_logger("driftd.coordination")

MARGIN = 1.0  # seconds of a lease's life not used: clock-rate differences, request latency


@dataclass
class Held:
    lease: LeaseRecord
    valid_until: float  # monotonic: act only before this
    renewed: float  # monotonic time the last successful renewal was sent
    releasing: bool = False
    published: Mapping[str, str] = field(default_factory=dict)


class Coordinator:
    def __init__(self, settings: CoordinationSettings, store: LeaseStore, listener: ShardListener, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.identity = settings.identity
        self.store = store
        self.listener = listener
        self.clock = clock
        self.environments: tuple[str, ...] = ()
        self.held: dict[str, Held] = {}
        self.members: frozenset[str] = frozenset()
        self.holders: dict[str, str] = {}  # environment -> holder, as last listed ("" released)
        self.observed = False  # a first successful list happened (readiness)
        self.last_error: str | None = None
        self._observer = Observer()
        self._member: LeaseRecord | None = None
        self._member_renewed = -1e18
        self._tg: anyio.abc.TaskGroup | None = None
        self._wake = anyio.Event()
        self._exported: set[str] = set()

    # --- what the daemon asks -------------------------------------------------------------

    def set_environments(self, names: tuple[str, ...]) -> None:
        self.environments = tuple(names)
        self._wake.set()

    def holds(self, env: str) -> bool:
        h = self.held.get(env)
        return h is not None and not h.releasing

    def may_act(self, env: str) -> bool:
        """Holding the lease with at least one renew interval of life left: time for a pass."""
        h = self.held.get(env)
        return h is not None and not h.releasing and self.clock() + self.settings.renew_interval < h.valid_until

    def ready(self) -> bool:
        return self.observed

    def snapshot(self) -> dict[str, object]:
        """For the HTTP API: who we are, whom we see, who holds what."""
        return {"identity": self.identity, "group": self.settings.group, "namespace": self.settings.namespace,
                "members": sorted(self.members), "held": sorted(e for e in self.held if self.holds(e)),
                "holders": {e: self.holders.get(e) or None for e in self.environments},
                "error": self.last_error}

    # --- loop -----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                first = True
                while True:
                    await self.tick(acquire=not first)
                    first = False  # the first round only registers and looks: let peers starting with us show up
                    self._wake = anyio.Event()
                    with anyio.move_on_after(self.settings.poll_interval):
                        await self._wake.wait()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.release_all()

    async def tick(self, *, acquire: bool = True) -> None:
        now = self.clock()
        await self._renew_membership(now)
        try:
            records = await self.store.list()
        except DriftdError as e:
            self._error("list", e)
            await self._check_validity(self.clock())
            return
        now = self.clock()
        self.last_error = None
        self._observer.observe(records, now)
        self.observed = True
        members = set(live_members(records, self._observer, now))
        if self._member is not None and now - self._member_renewed < self.settings.lease_duration:
            members.add(self.identity)
        self.members = frozenset(members)
        metrics.replica_members.set(len(members))
        envs = {r.subject: r for r in records if r.kind is LeaseKind.ENVIRONMENT}
        self.holders = {e: envs[e].holder for e in self.environments if e in envs}
        wanted = set(self.environments)
        for env, h in list(self.held.items()):
            if h.releasing:
                await self._renew(env, h)  # still ours until the worker has stopped
                continue
            rightful = owner(env, members)
            if env not in wanted or (rightful != self.identity and rightful in members):
                self._start_release(env)
            elif self.clock() - h.renewed >= self.settings.renew_interval:
                await self._renew(env, h)
        await self._check_validity(self.clock())
        if not acquire or self.identity not in members:
            return
        for env in self.environments:
            if env in self.held or owner(env, members) != self.identity:
                continue
            await self._acquire(env, envs.get(env))

    # --- membership -----------------------------------------------------------------------

    async def _renew_membership(self, now: float) -> None:
        if now - self._member_renewed < self.settings.renew_interval:
            return
        d = self.settings.lease_duration
        try:
            if self._member is None:
                got = await self.store.create(LeaseKind.MEMBER, self.identity, holder=self.identity, duration=d,
                                              annotations={})
                if got is None:  # ours from a previous life (or a duplicate identity): read it and take it
                    name = lease_name(self.settings.group, LeaseKind.MEMBER, self.identity)
                    current = next((r for r in await self.store.list() if r.name == name), None)
                    got = None if current is None else await self.store.update(current, holder=self.identity,
                                                                                duration=d)
            else:
                got = await self.store.update(self._member, holder=self.identity, duration=d)
                if got is None:
                    self._member = None  # changed under us: re-read next time
                    return
        except DriftdError as e:
            self._error("membership", e)
            return
        if got is not None:
            self._member, self._member_renewed = got, now

    # --- environment leases ---------------------------------------------------------------

    async def _acquire(self, env: str, current: LeaseRecord | None) -> None:
        d = self.settings.lease_duration
        now = self.clock()
        if current is not None and current.holder not in ("", self.identity) \
                and not self._observer.expired(current, now):
            return  # its holder is alive: it hands over when it notices we are the owner
        try:
            if current is None:
                got = await self.store.create(LeaseKind.ENVIRONMENT, env, holder=self.identity, duration=d,
                                              annotations={})
            else:
                got = await self.store.update(current, holder=self.identity, duration=d)
        except DriftdError as e:
            self._error(f"acquire {env}", e)
            return
        if got is None:
            return  # another replica was faster; the next list shows who
        previous = current.holder if current is not None else ""
        self.held[env] = Held(got, valid_until=now + d - MARGIN, renewed=now,
                              published=dict(current.annotations) if current is not None else {})
        self.holders[env] = self.identity
        metrics.lease_transitions.labels(event="acquired").inc()
        metrics.environment_holder.labels(environment=env, replica=self.identity).set(1)
        self._exported.add(env)
        log.info("lease.acquired", env=env, replica=self.identity, previous=previous or None,
                 members=sorted(self.members))
        await self.listener.acquired(env, dict(current.annotations) if current is not None else {})

    async def _renew(self, env: str, h: Held) -> None:
        sent = self.clock()
        try:
            state = dict(self.listener.handover_state(env))
        except Exception:  # the handover state is a courtesy: never let it cost the lease
            log.exception("lease.handover_state_failed", env=env)
            state = dict(h.published)
        try:
            got = await self.store.update(h.lease, holder=self.identity, duration=self.settings.lease_duration,
                                          annotations=state)
        except DriftdError as e:
            self._error(f"renew {env}", e)
            return
        if got is None:
            # Written by someone else: it is not ours any more, whatever our clock says.
            log.warning("lease.taken", env=env, replica=self.identity)
            await self._lose(env)
            return
        h.lease, h.renewed, h.published = got, sent, state
        h.valid_until = sent + self.settings.lease_duration - MARGIN

    async def _check_validity(self, now: float) -> None:
        for env, h in list(self.held.items()):
            if h.valid_until - now <= self.settings.renew_interval and self.held.get(env) is h:
                log.warning("lease.expiring", env=env, replica=self.identity, left=round(h.valid_until - now, 1),
                            error=self.last_error)
                await self._lose(env)

    async def _lose(self, env: str) -> None:
        """Stop acting at once; the lease is not written (we may not be able to)."""
        h = self.held.pop(env, None)
        if h is None:
            return
        metrics.lease_transitions.labels(event="lost").inc()
        self._unexport(env)
        if self._tg is not None:
            self._tg.start_soon(self._stop, env)
        else:
            await self._stop(env)

    async def _stop(self, env: str) -> None:
        try:
            await self.listener.released(env, lost=True)
        except Exception:
            log.exception("lease.release_failed", env=env)

    def _start_release(self, env: str) -> None:
        h = self.held.get(env)
        if h is None or h.releasing:
            return
        h.releasing = True
        if self._tg is not None:
            self._tg.start_soon(self._release, env)

    async def _release(self, env: str) -> None:
        """Hand over: stop the worker (its reverts recorded), publish the final handover state, free the lease."""
        state: dict[str, str] = {}
        try:
            state = dict(await self.listener.released(env, lost=False))
        except Exception:
            log.exception("lease.release_failed", env=env)
        h = self.held.get(env)
        if h is None:
            return  # lost meanwhile
        try:
            await self.store.update(h.lease, holder="", duration=self.settings.lease_duration,
                                    annotations=state or dict(h.published))
        except DriftdError as e:
            self._error(f"release {env}", e)  # it expires by itself
        if self.held.get(env) is h:
            del self.held[env]
        self._unexport(env)
        metrics.lease_transitions.labels(event="released").inc()
        log.info("lease.released", env=env, replica=self.identity)

    async def release_all(self) -> None:
        """Shutdown: hand every environment over at once, then leave the group."""
        for env in list(self.held):
            h = self.held.get(env)
            if h is not None and not h.releasing:
                h.releasing = True
                await self._release(env)
        if self._member is not None:
            try:
                await self.store.update(self._member, holder="", duration=self.settings.lease_duration)
            except DriftdError as e:
                self._error("leave", e)
            self._member = None

    def _unexport(self, env: str) -> None:
        if env in self._exported:
            self._exported.discard(env)
            metrics.environment_holder.remove(env, self.identity)

    def _error(self, what: str, e: DriftdError) -> None:
        metrics.lease_errors.inc()
        self.last_error = f"{what}: {e}"
        log.warning("lease.error", what=what, replica=self.identity, error=str(e))

