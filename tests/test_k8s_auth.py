"""The Kubernetes target as an in-cluster ServiceAccount: what a 403 says, and token rotation.

driftd runs with a token from the TokenRequest API (`kubectl create token`), laid out like the
kubelet's mount (DRIFTD_SERVICEACCOUNT_DIR), no kubeconfig, against the sandbox's RBAC-enabled
API server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from driftd.config import ClusterSettings, EnvironmentSettings, KubernetesEnvSettings
from driftd.errors import PermissionDenied
from driftd.model import DesiredObject, DesiredState, DriftKind, ResourceKey, TargetKind
from driftd.targets.kubernetes.client import Forbidden
from driftd.targets.kubernetes.target import KubernetesTarget


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _wait(pred: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _account(sb: Any, ns: str, name: str, rules: str) -> str:
    """A ServiceAccount bound to a Role with ``rules`` (kubectl create role syntax); its token."""
    sb.kubectl("create", "serviceaccount", name, "-n", ns)
    sb.kubectl("create", "role", name, "-n", ns, *rules.split())
    sb.kubectl("create", "rolebinding", name, "-n", ns, f"--role={name}", f"--serviceaccount={ns}:{name}")
    user = f"system:serviceaccount:{ns}:{name}"
    first = rules.split()[0].split("=")[1].split(",")[0]
    resource = rules.split()[1].split("=")[1].split(",")[0]
    _wait(lambda: sb.kubectl("auth", "can-i", first, resource, "-n", ns, f"--as={user}",
                             check=False).returncode == 0, f"{name}'s binding in effect")
    token: str = sb.kubectl("create", "token", name, "-n", ns, "--duration=1h").stdout.strip()
    assert token.count(".") == 2
    return token


def _in_cluster(sb: Any, sa: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sa.mkdir(exist_ok=True)
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(Path(sb.kube_ca).read_bytes())
    (sa / "namespace").write_text("default")
    server = urlparse(sb.kube_server)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", server.hostname or "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port or 443))
    monkeypatch.setenv("DRIFTD_SERVICEACCOUNT_DIR", str(sa))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(sa.parent))  # no ~/.kube/config to fall back on


def _desired(ns: str) -> DesiredState:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
          "data": {"mode": "blue"}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
           "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    return DesiredState("r1", tuple(
        DesiredObject(ResourceKey(TargetKind.KUBERNETES, o["kind"], o["metadata"]["name"], ns, o["apiVersion"]),
                      o, f"app.yaml#{i}") for i, o in enumerate((cm, dep))))


@pytest.mark.anyio
async def test_forbidden_names_the_verb_and_resource_the_role_lacks_and_a_rotated_token_is_used(
        sandbox: Any, k8s_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = k8s_namespace
    ds = _desired(ns)
    env = EnvironmentSettings("e", "repo", "main", kubernetes=KubernetesEnvSettings(cluster="c", namespace=ns))
    admin = KubernetesTarget(ClusterSettings("c", kubeconfig=Path(sandbox.kubeconfig)))
    try:
        await admin.revert(env, ds, (await admin.check(env, ds, inventory=frozenset())).drifts)
    finally:
        await admin.aclose()
    sandbox.kubectl("patch", "configmap", "settings", "-n", ns, "--type=merge", "-p", '{"data":{"mode":"red"}}')
    reader = _account(sandbox, ns, "reader", "--verb=get,list,watch --resource=configmaps")
    auditor = _account(sandbox, ns, "auditor",
                       "--verb=get,list,watch,patch --resource=configmaps,deployments.apps")
    sa = tmp_path / "serviceaccount"
    _in_cluster(sandbox, sa, reader, monkeypatch)

    t = KubernetesTarget(ClusterSettings("c"))  # no kubeconfig: the in-cluster service account
    try:
        client = await t.client()
        with pytest.raises(Forbidden) as denied:
            await client.request("GET", f"/apis/apps/v1/namespaces/{ns}/deployments", verb="list",
                                 resource="deployments.apps")
        assert isinstance(denied.value, PermissionDenied)
        assert (denied.value.verb, denied.value.resource, denied.value.namespace) == ("list", "deployments.apps", ns)
        assert not denied.value.retryable

        r = await t.check(env, ds, inventory=frozenset())
        assert r.drifts == ()  # nothing is missing from a view the role may not read
        text = "\n".join(r.errors)
        assert f"the role lacks list on deployments.apps in namespace {ns}" in text, text
        # The dry run is an SSA apply, authorised as PATCH: the error says patch, not "apply".
        assert f"the role lacks patch on configmaps in namespace {ns}" in text, text
        assert reader not in text

        # The kubelet rotates the token file mid-run (here: to an account allowed to patch):
        # the same client picks it up at its next request, no restart.
        (sa / "token").write_text(auditor)
        stamp = time.time() + 5
        os.utime(sa / "token", (stamp, stamp))  # a distinct mtime even within one clock tick
        r = await t.check(env, ds, inventory=frozenset())
        assert r.errors == ()
        assert [(d.key.name, d.drift) for d in r.drifts] == [("settings", DriftKind.MODIFIED)]

        # An invalid token: a 401 that says so, then a good one again works.
        (sa / "token").write_text("not-a-token")
        os.utime(sa / "token", (stamp + 5, stamp + 5))
        r = await t.check(env, ds, inventory=frozenset())
        assert r.errors
        assert all("unauthorized" in e or "refused the credentials" in e for e in r.errors), r.errors
        (sa / "token").write_text(auditor)
        os.utime(sa / "token", (stamp + 10, stamp + 10))
        r = await t.check(env, ds, inventory=frozenset())
        assert r.errors == ()
    finally:
        await t.aclose()
