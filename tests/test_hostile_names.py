"""Issue 14 §6: names from Git become API paths only when valid, and every segment is escaped.

Against the sandbox's kube-apiserver: a path built from a name holding '#', '?' or '/' reaches
exactly that (non-existent) name, never another object, and keeps its query (dryRun); through the
CLI, such names are per-object errors naming the file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from driftd.config import ClusterSettings
from driftd.names import name_problem, namespace_problem, segment
from driftd.sources.manifests import ManifestSet
from driftd.sources.yamlsafe import load_documents
from driftd.targets.kubernetes.client import NotFound, connect
from driftd.targets.kubernetes.discovery import ResourceInfo
from tests.daemon_support import GitRepo, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port
from tests.test_cli_e2e import Cli

CONFIGMAPS = ResourceInfo("", "v1", "configmaps", "ConfigMap", True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../victim", "x?dryRun=false", "x#frag", "x%2Fy", "a\\b"])
def test_path_breaking_names_are_refused(name: str) -> None:
    p = name_problem("Widget", name)  # a kind driftd knows nothing about still gets the path rule
    assert p is not None
    assert "metadata.name" in p


def test_dns1123_rules_where_they_apply() -> None:
    assert name_problem("ConfigMap", "settings.v2") is None
    assert "RFC 1123 subdomain" in (name_problem("ConfigMap", "Settings") or "")
    assert "RFC 1123 label" in (name_problem("Service", "a.b") or "")
    assert name_problem("ClusterRole", "system:controller:x") is None  # RBAC allows ':'
    assert namespace_problem("team-a") is None
    assert namespace_problem("a/b") is not None
    assert namespace_problem("x" * 64) is not None


def test_a_bad_name_is_an_error_naming_file_and_line_and_spares_the_others() -> None:
    text = b"""\
apiVersion: v1
kind: ConfigMap
metadata: {name: good}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: "x#frag"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ok, namespace: "../kube-system"}
"""
    out = ManifestSet(namespace="apps")
    out.add_documents(load_documents(text, "k/cm.yaml"), "k/cm.yaml")
    assert [o.key.name for o in out.objects] == ["good"]
    e1, e2 = out.errors
    assert e1.file == "k/cm.yaml"
    assert e1.line == 5
    assert "may not contain '#'" in e1.message
    assert "namespace '../kube-system' is not valid" in e2.message


def test_segments_are_escaped() -> None:
    assert segment("a/b?c#d") == "a%2Fb%3Fc%23d"
    assert CONFIGMAPS.path("ns", "x#y") == "/api/v1/namespaces/ns/configmaps/x%23y"
    assert CONFIGMAPS.path("ns", "../../kube-system/configmaps/v") == \
        "/api/v1/namespaces/ns/configmaps/..%2F..%2Fkube-system%2Fconfigmaps%2Fv"


@pytest.mark.sandbox
@pytest.mark.anyio
async def test_escaped_paths_reach_no_other_object(sandbox: Sandbox) -> None:
    ns = f"names-{uuid.uuid4().hex[:6]}"
    sandbox.kubectl("create", "namespace", ns)
    sandbox.kubectl("-n", ns, "create", "configmap", "x", "--from-literal=k=v")
    client = await connect(ClusterSettings("sandbox", kubeconfig=Path(sandbox.kubeconfig)))
    try:
        # ('x/' is not here: the API server decodes %2F and trims it to "x", which is why a '/' in a name is
        # refused when the manifest is read, above, and never reaches a request)
        for name in ("x#frag", "x?dryRun=All", f"../{ns}/configmaps/x"):
            try:
                got = await client.request("GET", CONFIGMAPS.path(ns, name), verb="get", resource="configmaps")
            except NotFound:
                continue
            raise AssertionError(f"{name!r} -> {CONFIGMAPS.path(ns, name)} reached {got.get('kind')} "
                                 f"{got.get('metadata', {}).get('name')}")
        # the dry run keeps its query: an apply under a '#' name would otherwise be a real write to "x"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x#frag", "namespace": ns},
                "data": {"k": "changed"}}
        with pytest.raises(Exception):  # refused by the server (invalid name), not applied to x
            await client.request("PATCH", CONFIGMAPS.path(ns, "x#frag"), verb="apply", resource="configmaps",
                                 query={"fieldManager": "driftd", "dryRun": "All", "force": True},
                                 body=body, content_type="application/apply-patch+yaml")
        assert json.loads(sandbox.kubectl("-n", ns, "get", "configmap", "x", "-o", "json").stdout)["data"] == {"k": "v"}
    finally:
        await client.aclose()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.sandbox
@pytest.mark.slow
def test_cli_reports_bad_names_per_object_and_touches_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"names-cli-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    try:
        sandbox.kubectl("-n", ns, "create", "configmap", "victim", "--from-literal=k=orig")
        docs = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "victim#x"}, "data": {"k": "evil"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"../{ns}/configmaps/victim"},
                 "data": {"k": "evil"}}]
        git = GitRepo(sandbox, f"names-{tag}.git", tmp_path / "work")
        git.commit({"k8s/app.yaml": yaml.safe_dump_all(docs)})
        cli = Cli(write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=tmp_path / "state",
                               port=free_port(), envs=[{"name": "k8s", "mode": "enforce", "kubernetes": {
                                   "cluster": "sandbox", "namespace": ns, "path": "k8s"}}]))
        code, report = cli.json("sync", "--env", "k8s")
        assert code == 2
        (env,) = report["environments"]
        assert "k8s/app.yaml" in env["error"]
        assert "may not contain" in env["error"]
        assert "2 problem" in env["error"] or "1 more problem" in env["error"]
        data = json.loads(sandbox.kubectl("-n", ns, "get", "configmap", "victim", "-o", "json").stdout)["data"]
        assert data == {"k": "orig"}
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
