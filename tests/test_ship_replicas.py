"""config/kubernetes/replicas: driftd as a StatefulSet of replicas sharing environments through Leases.

Read as files: the overlay renders, the StatefulSet keeps the sidecar's locked-down pod spec, the
config is valid and coordinates in the namespace the Role covers, the Role allows Leases only.
Applied to the sandbox's API server: the shipped ServiceAccount (token, admission policy and all)
can create and renew its Leases in its namespace, and nothing of the kind anywhere else.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import tomli
import yaml

from driftd.config import ClusterSettings, CoordinationSettings, parse_config
from driftd.errors import PermissionDenied
from driftd.policy.leases import LeaseKind
from tests.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "config" / "kubernetes" / "base"
REPLICAS = ROOT / "config" / "kubernetes" / "replicas"
SA_USER = "system:serviceaccount:driftd:driftd"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def render(d: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(d)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [x for x in yaml.safe_load_all(out.stdout) if x]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (d,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return d


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return render(REPLICAS)


def test_statefulset_replaces_the_deployment(docs: list[dict[str, Any]]) -> None:
    assert not [d for d in docs if d["kind"] == "Deployment"]
    sts = one(docs, "StatefulSet", "driftd")
    assert sts["spec"]["replicas"] >= 2
    assert sts["spec"]["serviceName"] == one(docs, "Service", "driftd")["metadata"]["name"]
    assert one(docs, "Service", "driftd")["spec"]["clusterIP"] == "None"
    # Same container as the sidecar, locked down the same way.
    base_dep = one(render(BASE), "Deployment", "driftd")
    (base_c,) = [c for c in base_dep["spec"]["template"]["spec"]["containers"] if c["name"] == "driftd"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["securityContext"] == base_c["securityContext"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sts["spec"]["template"]["spec"]["securityContext"] == base_dep["spec"]["template"]["spec"]["securityContext"]
    # The replica identity is the pod's name; each replica has its own state volume.
    env = {e["name"]: e for e in c["env"]}
    assert env["DRIFTD_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["state"]
    assert "state" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    cfg = tomli.loads(one(docs, "ConfigMap", "driftd-config")["data"]["driftd.toml"])
    assert mounts["state"] == cfg["daemon"]["state_dir"]


def test_config_coordinates_in_the_namespace_the_role_covers(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    text = one(docs, "ConfigMap", "driftd-config")["data"]["driftd.toml"]
    raw = tomli.loads(text)
    for f in ("token_file",):  # files only present in the pod
        raw["repositories"][0].pop(f, None)
    raw["daemon"].pop("api_token_file", None)
    cfg = parse_config(raw, tmp_path / "driftd.toml")
    assert cfg.coordination is not None
    role = one(docs, "Role", "driftd-leases")
    assert cfg.coordination.namespace == role["metadata"]["namespace"]
    assert "identity" not in raw["coordination"]  # the pod name, per replica
    (rule,) = role["rules"]
    assert rule == {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "list", "watch", "create", "update"]}
    binding = one(docs, "RoleBinding", "driftd-leases")
    assert binding["roleRef"]["name"] == "driftd-leases"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "driftd", "namespace": "driftd"}]


@pytest.mark.anyio
async def test_shipped_service_account_may_hold_leases_in_its_namespace_only(
        sandbox: Sandbox, tmp_path: Path) -> None:
    from driftd.targets.kubernetes.client import KubeClient
    from driftd.targets.kubernetes.leases import KubeLeaseStore

    objs = [d for d in render(REPLICAS) if d["kind"] in (
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding")]
    sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))
    token = sandbox.kubectl("-n", "driftd", "create", "token", "driftd", "--duration=10m").stdout.strip()
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "s", "cluster": {"server": sandbox.kube_server,
                                               "certificate-authority": sandbox.kube_ca}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "s", "user": "sa"}}]}))
    cluster = ClusterSettings("sandbox", kubeconfig=kubeconfig)
    settings = CoordinationSettings(cluster="sandbox", namespace="driftd", identity="driftd-0",
                                    group=f"ship{int(time.time())}")
    store = await KubeLeaseStore.open(settings, cluster)
    try:
        deadline = time.monotonic() + 20  # RBAC and the admission policy take a moment to apply
        while True:
            try:
                lease = await store.create(LeaseKind.MEMBER, "driftd-0", holder="driftd-0", duration=15,
                                           annotations={})
                break
            except PermissionDenied:
                if time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.5)
        assert lease is not None  # not a dry run: the admission policy exempts its own Leases
        assert await store.update(lease, holder="driftd-0", duration=15) is not None
        assert [r.subject for r in await store.list()] == ["driftd-0"]
        other = KubeLeaseStore(store.client, "default", settings.group, own_client=False)
        with pytest.raises(PermissionDenied, match="leases"):
            await other.create(LeaseKind.MEMBER, "driftd-0", holder="driftd-0", duration=15, annotations={})
        client: KubeClient = store.client
        with pytest.raises(PermissionDenied):  # nothing but Leases: no ConfigMap in its own namespace
            await client.request("POST", "/api/v1/namespaces/driftd/configmaps", verb="create",
                                 resource="configmaps", body={"apiVersion": "v1", "kind": "ConfigMap",
                                                              "metadata": {"name": "x"}})
    finally:
        await store.aclose()
