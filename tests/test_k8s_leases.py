"""KubeLeaseStore against the sandbox's real kube-apiserver: create, list, compare-and-swap, release."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from driftd.config import ClusterSettings, CoordinationSettings
from driftd.policy.leases import LeaseKind
from driftd.targets.kubernetes.leases import GROUP_LABEL, KubeLeaseStore
from tests.sandbox import Sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(sandbox: Sandbox, k8s_namespace: str) -> AsyncIterator[KubeLeaseStore]:
    s = await KubeLeaseStore.open(CoordinationSettings(cluster="sandbox", namespace=k8s_namespace, identity="r0",
                                                       group="t"),
                                  ClusterSettings("sandbox", kubeconfig=Path(sandbox.kubeconfig)))
    try:
        yield s
    finally:
        await s.aclose()


async def test_create_list_and_compare_and_swap(store: KubeLeaseStore, sandbox: Sandbox, k8s_namespace: str) -> None:
    a = await store.create(LeaseKind.ENVIRONMENT, "Prod_EU", holder="r0", duration=15,
                           annotations={"driftd.io/alerts": "[]"})
    assert a is not None
    assert (a.subject, a.holder, a.duration, a.kind) == ("Prod_EU", "r0", 15.0, LeaseKind.ENVIRONMENT)
    assert await store.create(LeaseKind.ENVIRONMENT, "Prod_EU", holder="r1", duration=15, annotations={}) is None
    # The real object: a coordination.k8s.io Lease with the holder and our labels.
    obj = sandbox.kubectl_json("get", "lease", a.name, "-n", k8s_namespace, "-o", "json")
    assert obj["spec"]["holderIdentity"] == "r0"
    assert obj["metadata"]["labels"][GROUP_LABEL] == "t"
    renewed = await store.update(a, holder="r0", duration=15, annotations={"driftd.io/alerts": "[1]"})
    assert renewed is not None
    assert renewed.version != a.version
    assert renewed.annotations == {"driftd.io/alerts": "[1]"}
    # A write based on the old version loses: someone renewed since it was read.
    assert await store.update(a, holder="r1", duration=15) is None
    released = await store.update(renewed, holder="", duration=15)
    assert released is not None
    assert released.holder == ""
    taken = await store.update(released, holder="r1", duration=15)
    assert taken is not None
    assert taken.transitions == 2  # r0 -> "" -> r1
    listed = {r.subject: r for r in await store.list()}
    assert listed["Prod_EU"].holder == "r1"


async def test_list_sees_only_its_group(store: KubeLeaseStore, sandbox: Sandbox, k8s_namespace: str) -> None:
    await store.create(LeaseKind.MEMBER, "r0", holder="r0", duration=15, annotations={})
    other = KubeLeaseStore(store.client, k8s_namespace, "other", own_client=False)
    await other.create(LeaseKind.MEMBER, "r9", holder="r9", duration=15, annotations={})
    assert [r.subject for r in await store.list()] == ["r0"]
    assert [r.subject for r in await other.list()] == ["r9"]
