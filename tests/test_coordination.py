"""The coordinator's lease protocol (driftd.engine.coordination) on a simulated clock.

The lease store here is in memory with the same compare-and-swap contract as the Kubernetes one
(tests/test_k8s_leases.py runs that against the real API server); the clock is simulated so that
expiry, failover time and "never two holders" can be checked step by step without waiting.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from driftd.config import CoordinationSettings
from driftd.engine.coordination import Coordinator
from driftd.errors import TargetError
from driftd.policy.leases import LeaseKind, LeaseRecord, Observer, lease_name
from driftd.policy.rendezvous import owner

pytestmark = pytest.mark.anyio

ENVS = tuple(f"env-{i:02d}" for i in range(12))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class MemLeases:
    """Leases with resourceVersion compare-and-swap, as the API server does them."""

    def __init__(self) -> None:
        self.items: dict[str, LeaseRecord] = {}
        self._v = itertools.count(1)
        self.broken: set[str] = set()  # identities whose requests fail (a partitioned replica)

    def view(self, who: str) -> MemView:
        return MemView(self, who)


class MemView:
    def __init__(self, mem: MemLeases, who: str) -> None:
        self.mem, self.who = mem, who

    def _check(self) -> None:
        if self.who in self.mem.broken:
            raise TargetError("connection refused", retryable=True)

    async def list(self) -> Sequence[LeaseRecord]:
        self._check()
        return list(self.mem.items.values())

    async def create(self, kind: LeaseKind, subject: str, *, holder: str, duration: float,
                     annotations: Mapping[str, str]) -> LeaseRecord | None:
        self._check()
        name = lease_name("g", kind, subject)
        if name in self.mem.items:
            return None
        rec = LeaseRecord(name, kind, subject, holder, duration, str(next(self.mem._v)), dict(annotations))
        self.mem.items[name] = rec
        return rec

    async def update(self, lease: LeaseRecord, *, holder: str, duration: float,
                     annotations: Mapping[str, str] | None = None) -> LeaseRecord | None:
        self._check()
        cur = self.mem.items.get(lease.name)
        if cur is None or cur.version != lease.version:
            return None
        rec = LeaseRecord(lease.name, lease.kind, lease.subject, holder, duration, str(next(self.mem._v)),
                          dict(cur.annotations if annotations is None else annotations))
        self.mem.items[lease.name] = rec
        return rec

    async def aclose(self) -> None:
        pass


class Listener:
    def __init__(self) -> None:
        self.acting: set[str] = set()
        self.handovers: dict[str, Mapping[str, str]] = {}

    async def acquired(self, env: str, handover: Mapping[str, str]) -> None:
        self.acting.add(env)
        self.handovers[env] = handover

    async def released(self, env: str, *, lost: bool) -> Mapping[str, str]:
        self.acting.discard(env)
        return self.handover_state(env)

    def handover_state(self, env: str) -> Mapping[str, str]:
        return {"driftd.io/alerts": f"state of {env}"}


def settings(identity: str) -> CoordinationSettings:
    return CoordinationSettings(cluster="c", namespace="n", identity=identity, group="g", lease_duration=15.0)


class Replica:
    def __init__(self, mem: MemLeases, identity: str, clock: Clock, tg: TaskGroup | None = None) -> None:
        self.listener = Listener()
        self.c = Coordinator(settings(identity), mem.view(identity), self.listener, clock=clock)
        if tg is not None:  # releases run as tasks of the test's group, as they do in the daemon's root group
            self.c._tg = tg
        self.c.set_environments(ENVS)
        self.first = True

    async def tick(self) -> None:
        await self.c.tick(acquire=not self.first)
        self.first = False
        await anyio.lowlevel.checkpoint()  # let release tasks run


def acting(replicas: Sequence[Replica]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in replicas:
        for e in ENVS:
            if r.c.may_act(e):
                out.setdefault(e, []).append(r.c.identity)
    return out


async def run(replicas: Sequence[Replica], clock: Clock, seconds: float, *, step: float = 2.0) -> None:
    end = clock.t + seconds
    while clock.t < end:
        for r in replicas:
            await r.tick()
        both = {e: who for e, who in acting(replicas).items() if len(who) > 1}
        assert not both, f"two replicas may act on one environment at t={clock.t}: {both}"
        clock.t += step


async def test_twelve_environments_shared_by_rendezvous() -> None:
    mem, clock = MemLeases(), Clock()
    rs = [Replica(mem, f"r{i}", clock) for i in range(3)]
    await run(rs, clock, 6)
    who = acting(rs)
    assert set(who) == set(ENVS)
    for e in ENVS:
        assert who[e] == [owner(e, ["r0", "r1", "r2"])]
    assert all(r.listener.acting == {e for e in ENVS if who[e] == [r.c.identity]} for r in rs)


async def test_dead_replica_taken_over_within_duration_plus_poll() -> None:
    mem, clock = MemLeases(), Clock()
    async with anyio.create_task_group() as tg:
        rs = [Replica(mem, f"r{i}", clock, tg) for i in range(3)]
        await run(rs, clock, 10)  # one renewal: the handover state is published
        dead = rs[1]
        theirs = {e for e in ENVS if dead.c.may_act(e)}
        assert theirs
        killed = clock.t  # SIGKILL: it never ticks again (its leases are not released)
        survivors = [rs[0], rs[2]]
        taken: float | None = None
        while clock.t - killed < 30:
            await run(survivors, clock, 1, step=1.0)
            if set(acting(survivors)) == set(ENVS):
                taken = clock.t - killed
                break
        assert taken is not None, "not taken over in 30 s"
        assert taken <= 15 + 2 + 1, taken
        # Handover state published by the dead holder reached the new one.
        for e in theirs:
            new = next(r for r in survivors if e in r.listener.acting)
            assert new.listener.handovers[e] == {"driftd.io/alerts": f"state of {e}"}
        tg.cancel_scope.cancel()


async def test_partitioned_holder_stops_before_anyone_takes_over() -> None:
    mem, clock = MemLeases(), Clock()
    async with anyio.create_task_group() as tg:
        rs = [Replica(mem, f"r{i}", clock, tg) for i in range(3)]
        await run(rs, clock, 6)
        cut = rs[0]
        theirs = {e for e in ENVS if cut.c.may_act(e)}
        mem.broken.add("r0")  # it keeps running but cannot reach the API server
        stopped_at: float | None = None
        start = clock.t
        # `run` asserts at every step that no environment has two replicas acting on it.
        while clock.t - start < 40:
            await run(rs, clock, 1, step=1.0)
            if stopped_at is None and not any(cut.c.may_act(e) for e in theirs):
                stopped_at = clock.t
        assert stopped_at is not None
        assert stopped_at - start <= 15
        assert not cut.listener.acting & theirs  # told to stop
        assert set(acting(rs[1:])) == set(ENVS)  # the others have everything
        tg.cancel_scope.cancel()


async def test_joining_replica_gets_its_share_by_handover() -> None:
    mem, clock = MemLeases(), Clock()
    async with anyio.create_task_group() as tg:
        rs = [Replica(mem, f"r{i}", clock, tg) for i in range(3)]
        await run(rs, clock, 6)
        new = Replica(mem, "r3", clock, tg)
        rs.append(new)
        start = clock.t
        await run(rs, clock, 8, step=1.0)
        expect = {e: owner(e, ["r0", "r1", "r2", "r3"]) for e in ENVS}
        assert {e: w[0] for e, w in acting(rs).items()} == expect
        assert clock.t - start < 15  # released at once, no waiting for an expiry
        tg.cancel_scope.cancel()


async def test_release_all_on_shutdown_frees_leases() -> None:
    mem, clock = MemLeases(), Clock()
    rs = [Replica(mem, f"r{i}", clock) for i in range(2)]
    await run(rs, clock, 6)
    await rs[0].c.release_all()
    mine = [r for r in mem.items.values() if r.holder == "r0"]
    assert mine == []
    await run(rs[1:], clock, 3, step=1.0)  # released, not expired: taken at the next poll
    assert set(acting(rs[1:])) == set(ENVS)


def test_observer_judges_expiry_by_observation_not_by_timestamps() -> None:
    obs = Observer()
    rec = LeaseRecord("l", LeaseKind.ENVIRONMENT, "e", "r0", 15.0, "1")
    obs.observe([rec], 100.0)
    assert not obs.expired(rec, 114.0)
    assert obs.expired(rec, 115.0)
    renewed = LeaseRecord("l", LeaseKind.ENVIRONMENT, "e", "r0", 15.0, "2")
    obs.observe([renewed], 114.0)
    assert not obs.expired(renewed, 128.0)
    assert obs.expired(LeaseRecord("l", LeaseKind.ENVIRONMENT, "e", "", 15.0, "3"), 114.0)  # released


def test_lease_names_are_valid_kubernetes_names() -> None:
    import re

    for subject in ("prod", "Prod_EU.1", "x" * 63, "a.b", "-"):
        n = lease_name("driftd", LeaseKind.ENVIRONMENT, subject)
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", n), n
    assert lease_name("driftd", LeaseKind.ENVIRONMENT, "Prod") != lease_name("driftd", LeaseKind.ENVIRONMENT, "prod")


async def test_readiness_waits_for_the_leases_and_for_what_was_taken_over() -> None:
    from types import SimpleNamespace

    from driftd.engine.status import EngineStatus

    mem, clock = MemLeases(), Clock()
    r = Replica(mem, "r0", clock)
    runtimes: list[SimpleNamespace] = []
    status = EngineStatus(lambda: runtimes)  # type: ignore[arg-type,return-value]
    status.config_loaded = True
    status.coordinator = r.c
    assert not status.ready()  # has not looked at the leases yet: it cannot know what it holds
    await r.tick()
    assert status.ready()  # holds nothing yet, nothing unchecked
    runtimes.append(SimpleNamespace(last_report=None, settings=SimpleNamespace(name="env-00")))  # just taken over
    assert not status.ready()
    runtimes[0].last_report = object()  # its first check under this replica
    assert status.ready()
    assert status.replicas() == r.c.snapshot()


async def test_no_revert_starts_once_the_lease_is_about_to_lapse(tmp_path: Any) -> None:
    from driftd.config import EnvironmentSettings, KubernetesEnvSettings
    from driftd.engine.reconciler import EnvRuntime, Reconciler
    from driftd.errors import DriftdError
    from driftd.model import DesiredObject, DesiredState, Mode, PassKind, TargetKind, TargetResult
    from tests.alerting_support import drift, key

    class Target:
        kind = TargetKind.KUBERNETES

        def __init__(self) -> None:
            self.reverted: list[Any] = []

        async def check(self, env: Any, desired: Any, *, inventory: Any) -> TargetResult:
            return TargetResult(TargetKind.KUBERNETES, resources=1, drifts=(drift(),))

        async def revert(self, env: Any, desired: Any, drifts: Sequence[Any], *, dry_run: bool = False) -> tuple:
            self.reverted += list(drifts)
            return tuple(drifts)

    env = EnvironmentSettings(name="e", repository="r", branch="main", mode=Mode.ENFORCE,
                              kubernetes=KubernetesEnvSettings(cluster="c", namespace="shop"))
    rt = EnvRuntime(env)
    rt.set_desired(DesiredState("rev", (DesiredObject(key(), {"kind": "Deployment"}, "app.yaml"),)))
    rec = Reconciler(None)
    target = Target()
    held = {"e": False}
    rec.may_revert = lambda name: held[name]
    with pytest.raises(DriftdError, match="lease"):
        await rec.pass_target(rt, target, pass_kind=PassKind.RUN)  # type: ignore[arg-type]
    assert target.reverted == []
    held["e"] = True
    await rec.pass_target(rt, target, pass_kind=PassKind.RUN)  # type: ignore[arg-type]
    assert len(target.reverted) == 1
