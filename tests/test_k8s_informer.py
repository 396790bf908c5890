"""Informer and watch-driven check against the real API server: restart, 410 Gone, cache use."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from driftd.config import ClusterSettings, EnvironmentSettings, KubernetesEnvSettings
from driftd.model import DesiredObject, DesiredState, DriftKind, ResourceKey, TargetKind
from driftd.targets.kubernetes.client import connect
from driftd.targets.kubernetes.discovery import Discovery
from driftd.targets.kubernetes.informer import Informer
from driftd.targets.kubernetes.target import KubernetesTarget
from tests.sandbox import restart_kube_apiserver


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _cm(ns: str, name: str) -> DesiredObject:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}}
    return DesiredObject(ResourceKey(TargetKind.KUBERNETES, "ConfigMap", name, ns, "v1"), body, "t.yaml")


async def _wait(pred: Any, limit: float = 30.0) -> None:
    with anyio.fail_after(limit):
        while True:
            if pred():
                return
            await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_informer_survives_gone_and_api_server_restart(sandbox_faults: Any, k8s_namespace: str) -> None:
    sb, ns = sandbox_faults, k8s_namespace
    for i in range(3):
        sb.kubectl("create", "configmap", f"c{i}", "-n", ns)
    client = await connect(ClusterSettings("sb", kubeconfig=Path(sb.kubeconfig)))
    events: list[tuple[str, str]] = []
    try:
        info = await Discovery(client).resolve("v1", "ConfigMap")
        inf = Informer(client, info, ns, on_event=lambda t, o: events.append((t, o["metadata"]["name"])),
                       backoff_max=1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(inf.run)
            await inf.synced_event.wait()
            assert {k[1] for k in inf.objects} >= {"c0", "c1", "c2"}
            sb.kubectl("create", "configmap", "c3", "-n", ns)
            await _wait(lambda: ("c3" in {k[1] for k in inf.objects}))
            # API server restart: the watch breaks, the informer reconnects, the cache stays whole.
            restart_kube_apiserver(sb)
            assert inf.synced
            assert {k[1] for k in inf.objects} >= {"c0", "c1", "c2", "c3"}
            sb.kubectl("create", "configmap", "c4", "-n", ns)
            await _wait(lambda: ("c4" in {k[1] for k in inf.objects}), limit=60)
            assert inf.reconnects >= 1
            assert not [e for e in events if e[0] == "DELETED"]
            tg.cancel_scope.cancel()
        # 410 Gone: an informer resuming from a resourceVersion the server no longer keeps re-lists,
        # swaps its cache in one step and reports only real differences (c5), never a deletion.
        sb.kubectl("create", "configmap", "c5", "-n", ns)
        stale = Informer(client, info, ns, on_event=lambda t, o: events.append((t, o["metadata"]["name"])))
        stale.objects = dict(inf.objects)
        stale.synced = True
        stale.resource_version = "1"
        events.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stale.run)
            await _wait(lambda: stale.relists == 1)
            tg.cancel_scope.cancel()
        assert {k[1] for k in stale.objects} >= {"c0", "c1", "c2", "c3", "c4", "c5"}
        assert ("ADDED", "c5") in events
        assert not [e for e in events if e[0] == "DELETED"]
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_watch_feeds_check_without_lists_and_reports_nothing_missing(sandbox: Any, k8s_namespace: str) -> None:
    ns = k8s_namespace
    ds = DesiredState("r1", tuple(_cm(ns, f"w{i}") for i in range(5)))
    env = EnvironmentSettings("e", "repo", "main", kubernetes=KubernetesEnvSettings(cluster="sb", namespace=ns))
    t = KubernetesTarget(ClusterSettings("sb", kubeconfig=Path(sandbox.kubeconfig)))
    changed: list[ResourceKey] = []
    try:
        r = await t.check(env, ds, inventory=frozenset())
        await t.revert(env, ds, r.drifts)
        async with anyio.create_task_group() as tg:
            await tg.start(t.watch, env, ds, changed.append)
            r = await t.check(env, ds, inventory=frozenset())
            assert r.drifts == ()
            dry_runs = t.dry_runs
            r = await t.check(env, ds, inventory=frozenset())
            assert r.api_calls == 0  # informer cache, warm verdicts: no request at all
            assert t.dry_runs == dry_runs
            sandbox.kubectl("patch", "configmap", "w1", "-n", ns, "--type=merge", "-p", '{"data":{"k":"x"}}')
            await _wait(lambda: any(k.name == "w1" for k in changed))
            r = await t.check(env, ds, inventory=frozenset())
            assert [(d.key.name, d.drift) for d in r.drifts] == [("w1", DriftKind.MODIFIED)]
            assert r.api_calls == 1  # one dry run: only the object whose resourceVersion moved
            tg.cancel_scope.cancel()
    finally:
        await t.aclose()


def _secret(ns: str, name: str) -> DesiredObject:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque",
            "data": {"k": "dg=="}}
    return DesiredObject(ResourceKey(TargetKind.KUBERNETES, "Secret", name, ns, "v1"), body, "t.yaml")


@pytest.mark.anyio
async def test_informers_shared_by_two_environments_survive_one_restarting(sandbox: Any, k8s_namespace: str
                                                                            ) -> None:
    """Two environments on one cluster share the ConfigMap informer of a namespace. One of them
    restarting its watch at a new revision (which no longer declares ConfigMaps) must not stop the
    informer the other one reads; the last holder leaving stops it."""
    ns = k8s_namespace
    a1 = DesiredState("a1", (_cm(ns, "a0"), _secret(ns, "s0")))
    a2 = DesiredState("a2", (_secret(ns, "s0"),))
    b1 = DesiredState("b1", (_cm(ns, "b0"), _cm(ns, "b1")))
    env_a = EnvironmentSettings("a", "repo", "a", kubernetes=KubernetesEnvSettings(cluster="sb", namespace=ns))
    env_b = EnvironmentSettings("b", "repo", "b", kubernetes=KubernetesEnvSettings(cluster="sb", namespace=ns))
    t = KubernetesTarget(ClusterSettings("sb", kubeconfig=Path(sandbox.kubeconfig)))
    seen_a: list[str] = []
    seen_b: list[str] = []
    try:
        for env, ds in ((env_a, a1), (env_b, b1)):
            await t.revert(env, ds, (await t.check(env, ds, inventory=frozenset())).drifts)
        disc = await t.discovery()
        cms, secrets = await disc.resolve("v1", "ConfigMap"), await disc.resolve("v1", "Secret")
        shared = t.shared_informers

        async with anyio.create_task_group() as tg:
            async def start(env: EnvironmentSettings, ds: DesiredState, sink: list[str]) -> anyio.CancelScope:
                scope = anyio.CancelScope()

                async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                    with scope:
                        await t.watch(env, ds, lambda k: sink.append(k.name), task_status=task_status)
                await tg.start(run)
                return scope

            watch_a = await start(env_a, a1, seen_a)  # A starts first: its task group runs the ConfigMap informer
            watch_b = await start(env_b, b1, seen_b)
            assert shared.refs(cms, ns) == 2
            assert shared.refs(secrets, ns) == 1
            cm_informer = shared.get(cms, ns)
            secret_informer = shared.get(secrets, ns)
            assert cm_informer is not None
            assert secret_informer is not None

            # A moves to revision a2, as the daemon does it: cancel the old watch, start the new one.
            watch_a.cancel()
            watch_a = await start(env_a, a2, seen_a)
            await anyio.sleep(0.5)
            assert shared.refs(cms, ns) == 1
            assert shared.get(cms, ns) is cm_informer  # same cache, never re-listed
            assert shared.get(secrets, ns) is secret_informer
            assert cm_informer.relists == 1
            assert secret_informer.relists == 1
            # B's informer still runs (adopted by B's watch): its events still arrive, to B only.
            seen_a.clear()
            sandbox.kubectl("patch", "configmap", "b1", "-n", ns, "--type=merge", "-p", '{"data":{"k":"x"}}')
            await _wait(lambda: "b1" in seen_b)
            await _wait(lambda: cm_informer.objects.get((ns, "b1"), {}).get("data") == {"k": "x"})
            r = await t.check(env_b, b1, inventory=frozenset())
            assert [(d.key.name, d.drift) for d in r.drifts] == [("b1", DriftKind.MODIFIED)]
            assert r.api_calls == 1  # the informer's cache plus one dry run: no LIST
            sandbox.kubectl("patch", "secret", "s0", "-n", ns, "--type=merge", "-p", '{"data":{"k":"eA=="}}')
            await _wait(lambda: "s0" in seen_a)
            assert "b1" not in seen_a

            # The last holder leaving stops the informer: check() lists again.
            watch_b.cancel()
            await anyio.sleep(0.5)
            assert shared.refs(cms, ns) == 0
            assert shared.get(cms, ns) is None
            assert t.informers == [secret_informer]
            r = await t.check(env_b, b1, inventory=frozenset())
            assert r.api_calls >= 1
            watch_a.cancel()
            await anyio.sleep(0.2)
            assert t.informers == []
            tg.cancel_scope.cancel()
    finally:
        await t.aclose()


@pytest.mark.anyio
async def test_check_objects_reevaluates_only_the_keys_events_named(sandbox: Any, k8s_namespace: str) -> None:
    ns = k8s_namespace
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad", "namespace": ns},
           "spec": {"ports": [{"port": 99999}]}}
    objs = (*(_cm(ns, f"c{i}") for i in range(4)),
            DesiredObject(ResourceKey(TargetKind.KUBERNETES, "Service", "bad", ns, "v1"), bad, "t.yaml#bad"))
    ds = DesiredState("r1", objs)
    inventory = frozenset({*(o.key for o in objs), _cm(ns, "gone").key})
    env = EnvironmentSettings("e", "repo", "main", kubernetes=KubernetesEnvSettings(
        cluster="sb", namespace=ns, watch_namespaces=(ns,)))
    t = KubernetesTarget(ClusterSettings("sb", kubeconfig=Path(sandbox.kubeconfig)))
    events: list[ResourceKey] = []
    key = {o.key.name: o.key for o in objs}
    try:
        await t.revert(env, ds, (await t.check(env, ds, inventory=frozenset())).drifts)
        sandbox.kubectl("create", "service", "clusterip", "bad", "-n", ns, "--tcp=80:80")
        sandbox.kubectl("create", "configmap", "gone", "-n", ns, "--from-literal=k=v")
        async with anyio.create_task_group() as tg:
            await tg.start(t.watch, env, ds, events.append)
            full = await t.check(env, ds, inventory=inventory)
            assert [(d.key.name, d.drift) for d in full.drifts] == [("gone", DriftKind.ORPHANED)]
            assert any("99999" in e for e in full.errors), full.errors

            sandbox.kubectl("patch", "configmap", "c1", "-n", ns, "--type=merge", "-p", '{"data":{"k":"x"}}')
            sandbox.kubectl("delete", "configmap", "c3", "-n", ns)
            sandbox.kubectl("create", "configmap", "stray", "-n", ns)
            await _wait(lambda: {"c1", "c3", "stray"} <= {k.name for k in events})
            named = frozenset(k for k in events if k.name in ("c1", "stray"))
            r = await t.check_objects(env, ds, named, inventory=inventory)
            assert [(d.key.name, d.drift) for d in r.drifts] == [("c1", DriftKind.MODIFIED),
                                                                  ("stray", DriftKind.UNMANAGED)]
            assert r.resources == 1  # c1: the only declared object among the keys
            assert r.api_calls == 1  # informer caches; one dry run for c1
            # Errors of objects not re-evaluated are kept, not dropped by a pass over others.
            assert any("99999" in e for e in r.errors), r.errors
            r = await t.check_objects(env, ds, frozenset({key["c3"], _cm(ns, "gone").key}), inventory=inventory)
            assert [(d.key.name, d.drift) for d in r.drifts] == [("c3", DriftKind.MISSING),
                                                                  ("gone", DriftKind.ORPHANED)]
            assert r.api_calls == 0
            r = await t.check_objects(env, ds, frozenset({key["c0"], key["c2"]}), inventory=inventory)
            assert (r.drifts, r.resources, r.api_calls) == ((), 2, 0)
            tg.cancel_scope.cancel()
        # Without informers the same answers come from LISTs.
        cold = KubernetesTarget(ClusterSettings("sb", kubeconfig=Path(sandbox.kubeconfig)))
        r = await cold.check_objects(env, ds, frozenset({key["c1"], key["c3"]}), inventory=inventory)
        assert [(d.key.name, d.drift) for d in r.drifts] == [("c1", DriftKind.MODIFIED), ("c3", DriftKind.MISSING)]
        assert r.resources == 2
        await cold.aclose()
    finally:
        await t.aclose()


@pytest.mark.anyio
async def test_events_of_custom_cluster_scoped_objects_carry_gits_key(sandbox: Any, k8s_namespace: str) -> None:
    """The manifest loader cannot know a custom kind's scope and gives the object the default
    namespace; events must still name it as Git does, and check_objects must find it by that key."""
    from tests.test_k8s_orphans_cli import CRD

    ns = k8s_namespace
    sandbox.kubectl("apply", "-f", "-", input=CRD)
    sandbox.kubectl("wait", "--for=condition=Established", "crd/widgets.k8s2.example.com", "--timeout=30s")
    name = f"w-{ns[-6:]}"
    body = {"apiVersion": "k8s2.example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": ns},
            "spec": {"size": 1}}
    git_key = ResourceKey(TargetKind.KUBERNETES, "Widget", name, ns, "k8s2.example.com/v1")  # as the loader makes it
    ds = DesiredState("r1", (DesiredObject(git_key, body, "w.yaml"),))
    env = EnvironmentSettings("e", "repo", "main", kubernetes=KubernetesEnvSettings(cluster="sb", namespace=ns))
    t = KubernetesTarget(ClusterSettings("sb", kubeconfig=Path(sandbox.kubeconfig)))
    events: list[ResourceKey] = []
    try:
        await t.revert(env, ds, (await t.check(env, ds, inventory=frozenset())).drifts)
        async with anyio.create_task_group() as tg:
            await tg.start(t.watch, env, ds, events.append)
            sandbox.kubectl("patch", "widget", name, "--type=merge", "-p", '{"spec":{"size":2}}')
            await _wait(lambda: any(k.name == name for k in events))
            assert git_key in events
            r = await t.check_objects(env, ds, frozenset({git_key}), inventory=frozenset({git_key}))
            assert [(d.key.name, d.drift) for d in r.drifts] == [(name, DriftKind.MODIFIED)]
            assert r.resources == 1
            tg.cancel_scope.cancel()
    finally:
        await t.aclose()
        sandbox.kubectl("delete", "widget", name, "--ignore-not-found", check=False)


@pytest.mark.anyio
async def test_watch_restarted_at_once_keeps_its_informer_running(sandbox: Any, k8s_namespace: str) -> None:
    """The only holder's watch is cancelled and a new one started in the same breath (the old one
    still letting go): the new watch must end up running the informer, not holding a dead cache."""
    ns = k8s_namespace
    ds = DesiredState("r1", (_cm(ns, "x0"),))
    env = EnvironmentSettings("e", "repo", "main", kubernetes=KubernetesEnvSettings(cluster="sb", namespace=ns))
    t = KubernetesTarget(ClusterSettings("sb", kubeconfig=Path(sandbox.kubeconfig)))
    seen: list[str] = []
    try:
        await t.revert(env, ds, (await t.check(env, ds, inventory=frozenset())).drifts)
        async with anyio.create_task_group() as tg:
            async def start() -> anyio.CancelScope:
                scope = anyio.CancelScope()

                async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                    with scope:
                        await t.watch(env, ds, lambda k: seen.append(k.name), task_status=task_status)
                await tg.start(run)
                return scope

            old = await start()
            for i in range(3):
                old.cancel()
                old = await start()
                sandbox.kubectl("patch", "configmap", "x0", "-n", ns, "--type=merge", "-p",
                                json.dumps({"data": {"k": f"v{i}"}}))
                await _wait(lambda: "x0" in seen, limit=15)
                seen.clear()
            assert len(t.informers) == 1
            assert t.informers[0].relists == 1  # handed over, never re-listed
            tg.cancel_scope.cancel()
    finally:
        await t.aclose()


@pytest.mark.anyio
async def test_an_informer_handed_over_before_it_synced_is_adopted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a server: the informer's first LIST is slow (API server down). Its holder's watch is
    cancelled and a new one takes a reference in the same breath; the old one lets go while the new
    one still waits for the sync. The new one must adopt the informer (no lost wake-up), else it
    waits for a sync nobody works on."""
    from driftd.targets.kubernetes import informers as mod
    from driftd.targets.kubernetes.discovery import ResourceInfo

    gate = anyio.Event()
    made: list[Any] = []

    class SlowInformer:
        def __init__(self, client: Any, info: ResourceInfo, namespace: str | None, *, on_event: Any = None) -> None:
            self.info, self.namespace = info, namespace
            self.synced_event = anyio.Event()
            self.runs = 0
            self.running = False
            made.append(self)

        async def run(self) -> None:
            self.runs += 1
            self.running = True
            try:
                await gate.wait()
                self.synced_event.set()
                await anyio.sleep_forever()
            finally:
                self.running = False

    monkeypatch.setattr(mod, "Informer", SlowInformer)
    shared = mod.SharedInformers()
    info = ResourceInfo("", "v1", "configmaps", "ConfigMap", True)
    scopes = [(info, "ns")]
    async with anyio.create_task_group() as tg:
        old = anyio.CancelScope()
        new_started = anyio.Event()

        async def hold_old() -> None:
            with old:
                await shared.hold(None, scopes, lambda k: None)  # type: ignore[arg-type]

        async def watch_new() -> None:
            await tg.start(partial(shared.hold, None, scopes, lambda k: None))  # returns once synced
            new_started.set()

        tg.start_soon(hold_old)
        await anyio.wait_all_tasks_blocked()
        assert made[0].running
        old.cancel()
        tg.start_soon(watch_new)
        await anyio.wait_all_tasks_blocked()
        gate.set()
        with anyio.fail_after(5):
            await new_started.wait()
        assert len(made) == 1
        assert made[0].running
        assert made[0].runs == 2  # the first run ended with its holder, the adopter runs it now
        assert shared.refs(info, "ns") == 1
        tg.cancel_scope.cancel()
