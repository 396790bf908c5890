"""Helm releases from Git: the release file, `helm template` with the real podinfo and kube-state-metrics
charts (tests/sandbox/build-tools.sh builds helm), the rendering cache, hooks and chart tests excluded, bounds,
and the release file's errors. Against the sandbox cluster: after a sync zero drift, kubectl changes to rendered
objects detected, reverted and pruned like any other object."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from driftd.model import ClusterInfo
from driftd.sources.helm import HelmRenderer, parse_releases
from driftd.sources.loader import DesiredStateLoader, LoadResult
from tests.sandbox import Sandbox
from tests.tools_support import CORPUS_HELM, Work, cache_for, env_settings, helm

CLUSTER = ClusterInfo("v1.34.4", ("v1", "apps/v1", "autoscaling/v2", "policy/v1"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def kinds(result: LoadResult) -> Counter[str]:
    assert result.state is not None, result.error
    return Counter(o.key.kind for o in result.state.kubernetes)


async def load(work: Work, tmp: Path, loader: DesiredStateLoader | None = None, **kw: Any
               ) -> tuple[LoadResult, DesiredStateLoader]:
    cache = cache_for(work, tmp)
    await cache.fetch()
    loader = loader or DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm()))
    loader.repositories = {"envs": cache}

    async def info() -> ClusterInfo:
        return CLUSTER

    return await loader.load(env_settings(**kw), cluster=info), loader


# --- the release file ----------------------------------------------------------------------------


def test_release_file_errors_name_the_release_and_line() -> None:
    text = b"""# releases of prod
releases:
  - name: ok
    chart: ../charts/podinfo
    values_files: [v.yaml]
  - name: Bad_Name
    chart: x
  - name: remote
    repository: https://charts.example.com
    chart: app
    version: ^1.2
  - name: local-version
    chart: ./c
    version: 1.0.0
  - name: escape
    chart: ../../../etc
  - name: typo
    chart: ./c
    valuse: {}
"""
    rels, errs = parse_releases(text, "envs/prod/driftd-helm.yaml")
    assert [(r.name, r.chart, r.values_files) for r in rels] == [("ok", "envs/charts/podinfo", ("envs/prod/v.yaml",))]
    msgs = [str(e) for e in errs]
    assert len(msgs) == 5, msgs
    assert all(m.startswith("envs/prod/driftd-helm.yaml:2: releases[") for m in msgs), msgs
    assert "releases[1]: name must be a release name" in msgs[0]
    assert "needs an exact version" in msgs[1]
    assert "a chart in Git is versioned by Git" in msgs[2]
    assert "inside this repository" in msgs[3]
    assert "unknown key(s) valuse" in msgs[4]
    _, errs = parse_releases(b"- name: x\n", "f/driftd-helm.yaml")
    assert "holds one mapping with a list 'releases'" in str(errs[0])


# --- rendering with real charts ------------------------------------------------------------------


@pytest.mark.anyio
async def test_podinfo_and_kube_state_metrics_render_cached_by_chart_and_values(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.copy(CORPUS_HELM / "podinfo", "charts/podinfo")
    work.copy(CORPUS_HELM / "kube-state-metrics", "k8s/ksm-chart")
    work.write({
        "k8s/driftd-helm.yaml": """
releases:
  - name: podinfo
    namespace: web
    chart: ../charts/podinfo
    values_files: [podinfo-prod.yaml]
    values: {replicaCount: 2}
  - name: ksm
    chart: ksm-chart
""",
        "k8s/podinfo-prod.yaml": (CORPUS_HELM / "podinfo" / "values-prod.yaml").read_text(),
        "k8s/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n",
    })
    rev1 = work.commit()
    r, loader = await load(work, tmp_path)
    assert r.ok, r.error
    # values-prod: ConfigMap (redis), podinfo + redis Deployments and Services, HPA; no test Pods, no hook Job.
    # kube-state-metrics defaults: ServiceAccount, ClusterRole, ClusterRoleBinding, Service, Deployment.
    assert kinds(r) == Counter({"Deployment": 3, "Service": 3, "ConfigMap": 2, "HorizontalPodAutoscaler": 1,
                                "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1})
    assert r.state is not None
    by = {(o.key.kind, o.key.name): o for o in r.state.kubernetes}
    podinfo = by[("Deployment", "podinfo")]
    assert podinfo.key.namespace == "web", "the release's namespace"
    assert podinfo.source.startswith("k8s/driftd-helm.yaml[podinfo]#")
    assert "replicas" not in podinfo.body["spec"], "hpa.enabled in values-prod: replicas left to the HPA"
    assert by[("Deployment", "ksm-kube-state-metrics")].key.namespace == "apps", "the environment's namespace"
    assert by[("ClusterRole", "ksm-kube-state-metrics")].key.namespace == ""
    assert by[("ConfigMap", "plain")].key.namespace == "apps", "plain manifests still read"
    assert loader.helm.renders == 2

    # A commit that touches neither chart nor values: nothing rendered again (cache by chart digest + values).
    work.commit({"k8s/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: c}\n"})
    r2, _ = await load(work, tmp_path, loader)
    assert r2.ok
    assert r2.revision != rev1
    assert loader.helm.renders == 2
    # Inline values changed: only that release renders again.
    work.commit({"k8s/driftd-helm.yaml": (work.dir / "k8s/driftd-helm.yaml").read_text().replace(
        "replicaCount: 2", "replicaCount: 3")})
    r3, _ = await load(work, tmp_path, loader)
    assert r3.ok
    assert loader.helm.renders == 3
    # The chart outside the environment's path changed: the environment sees it although its tree did not change.
    work.commit({"charts/podinfo/templates/extra.yaml": "apiVersion: v1\nkind: ConfigMap\n"
                 "metadata: {name: extra}\ndata: {x: '1'}\n"})
    r4, _ = await load(work, tmp_path, loader)
    assert r4.ok
    assert loader.helm.renders == 4
    assert kinds(r4)["ConfigMap"] == 3


@pytest.mark.anyio
async def test_hooks_and_chart_tests_are_excluded(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.copy(CORPUS_HELM / "podinfo", "k8s/podinfo")
    # Hooks on, tests on by default (helm test Pods with random names): neither may reach the desired state.
    work.commit({"k8s/driftd-helm.yaml": "releases:\n  - name: pi\n    chart: podinfo\n"
                 "    values: {hooks: {preInstall: {job: {enabled: true}}}}\n"})
    r, _ = await load(work, tmp_path)
    assert kinds(r) == Counter({"Deployment": 1, "Service": 1})
    # And helm itself does render them without those flags (so the assertion above can fail).
    out = await anyio.run_process([helm(), "template", "pi", str(work.dir / "k8s/podinfo"), "--kube-version",
                                   "v1.34.4", "--set", "hooks.preInstall.job.enabled=true"])
    assert b"kind: Pod" in out.stdout
    assert b"helm.sh/hook" in out.stdout


@pytest.mark.anyio
async def test_errors_are_per_release_and_bounded(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.copy(CORPUS_HELM / "podinfo", "k8s/podinfo")
    work.commit({"k8s/driftd-helm.yaml": "releases:\n  - name: pi\n    chart: podinfo\n"
                 "    values_files: [missing.yaml]\n"})
    r, _ = await load(work, tmp_path)
    assert not r.ok
    assert "k8s/driftd-helm.yaml:1: release pi: values file k8s/missing.yaml does not exist" in str(r.problems[0])

    # A cluster older than the chart's kubeVersion: helm's own message, naming the release file.
    work.commit({"k8s/driftd-helm.yaml": "releases:\n  - name: pi\n    chart: podinfo\n"})
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    loader = DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm()))

    async def old() -> ClusterInfo:
        return ClusterInfo("v1.20.0")

    r = await loader.load(env_settings(), cluster=old)
    assert not r.ok
    assert "helm template pi failed" in str(r.problems[0])
    assert "kubeVersion" in str(r.problems[0]) or "incompatible" in str(r.problems[0])

    # Output bound: a rendering over max_output is refused, not read into memory.
    loader = DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm(), max_output=2000))
    r = await loader.load(env_settings(), cluster=lambda: _info())
    assert not r.ok
    assert "printed more than 2,000 bytes" in str(r.problems[0])

    # No cluster answer: no rendering against a guess.
    async def down() -> ClusterInfo:
        from driftd.errors import TargetError
        raise TargetError("connection refused", subject="cluster c")

    r = await DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm())).load(env_settings(), cluster=down)
    assert not r.ok
    assert "the cluster's version is unknown" in str(r.problems[0])


async def _info() -> ClusterInfo:
    return CLUSTER


def test_build_tools_script_honours_an_existing_directory(tmp_path: Path) -> None:
    for name in ("helm", "sops"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    out = subprocess.run(["bash", "tests/sandbox/build-tools.sh"], capture_output=True, text=True, check=True,
                         env={**os.environ, "DRIFTD_TOOLS_BIN": str(tmp_path)}, cwd=str(Path(__file__).parent.parent))
    assert out.stdout.strip() == str(tmp_path)
    assert sys.executable  # the script needs no Python


@pytest.mark.anyio
async def test_chart_from_a_chart_repository_pinned_by_version(tmp_path: Path) -> None:
    """A real chart repository (index.yaml + packaged chart, made by helm, served over HTTP)."""
    import functools
    import http.server
    import threading

    repo = tmp_path / "chartrepo"
    repo.mkdir()
    await anyio.run_process([helm(), "package", str(CORPUS_HELM / "podinfo"), "-d", str(repo)])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        await anyio.run_process([helm(), "repo", "index", str(repo), "--url", url])
        work = Work(tmp_path)
        work.commit({"k8s/driftd-helm.yaml": f"releases:\n  - name: remote\n    repository: {url}\n"
                     "    chart: podinfo\n    version: 6.14.1\n    values: {replicaCount: 3}\n"})
        r, loader = await load(work, tmp_path)
        assert kinds(r) == Counter({"Deployment": 1, "Service": 1})
        assert r.state is not None
        dep = next(o for o in r.state.kubernetes if o.key.kind == "Deployment")
        assert dep.body["spec"]["replicas"] == 3
        # Same repository, chart, version and values on the next commit: not fetched nor rendered again.
        work.commit({"k8s/other.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: o}\n"})
        r2, _ = await load(work, tmp_path, loader)
        assert r2.ok
        assert loader.helm.renders == 1
        # A version the repository does not have: the release's error.
        work.commit({"k8s/driftd-helm.yaml": f"releases:\n  - name: remote\n    repository: {url}\n"
                     "    chart: podinfo\n    version: 9.9.9\n"})
        r3, _ = await load(work, tmp_path, loader)
        assert not r3.ok
        assert "helm template remote failed" in str(r3.problems[0])
        assert "9.9.9" in str(r3.problems[0])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.anyio
async def test_the_clusters_api_versions_decide_what_renders(tmp_path: Path) -> None:
    """kube-state-metrics renders its VerticalPodAutoscaler only when the cluster serves autoscaling.k8s.io/v1
    (.Capabilities.APIVersions.Has): the API versions reach helm, and a change of them renders again."""
    work = Work(tmp_path)
    work.copy(CORPUS_HELM / "kube-state-metrics", "k8s/ksm")
    work.commit({"k8s/driftd-helm.yaml": "releases:\n  - name: ksm\n    chart: ksm\n"
                 "    values: {verticalPodAutoscaler: {enabled: true}}\n"})
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    loader = DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm()))

    async def without() -> ClusterInfo:
        return CLUSTER

    async def with_vpa() -> ClusterInfo:
        return ClusterInfo(CLUSTER.kube_version, (*CLUSTER.api_versions, "autoscaling.k8s.io/v1"))

    assert "VerticalPodAutoscaler" not in kinds(await loader.load(env_settings(), cluster=without))
    loader._envs.clear()  # the same commit: drop the per-environment shortcut, keep the rendering cache
    assert kinds(await loader.load(env_settings(), cluster=with_vpa))["VerticalPodAutoscaler"] == 1
    assert loader.helm.renders == 2


@pytest.mark.sandbox
@pytest.mark.anyio
async def test_cluster_info_from_the_sandbox_api_server(sandbox: Sandbox) -> None:
    from driftd.config import ClusterSettings
    from driftd.targets.kubernetes.target import KubernetesTarget

    target = KubernetesTarget(ClusterSettings("sandbox", kubeconfig=Path(sandbox.kubeconfig)))
    try:
        info = await target.cluster_info()
        assert info.kube_version == "v1.34.4"
        for gv in ("v1", "apps/v1", "apps/v1/Deployment", "v1/ConfigMap", "autoscaling/v2/HorizontalPodAutoscaler",
                   "rbac.authorization.k8s.io/v1/ClusterRole"):
            assert gv in info.api_versions, gv
        assert "autoscaling.k8s.io/v1" not in info.api_versions
        assert await target.cluster_info() is info, "reused, not asked again"
    finally:
        await target.aclose()


@pytest.mark.anyio
async def test_the_rendering_cache_is_bounded_by_bytes(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.copy(CORPUS_HELM / "podinfo", "k8s/podinfo")
    releases = "releases:\n" + "".join(f"  - name: p{i}\n    chart: podinfo\n" for i in range(3))
    work.commit({"k8s/driftd-helm.yaml": releases})
    renderer = HelmRenderer(helm(), cache_bytes=5000)  # one podinfo rendering is ~3-4 kB
    r, loader = await load(work, tmp_path, DesiredStateLoader({}, helm=renderer))
    assert r.ok, r.error
    assert renderer.renders == 3
    assert len(renderer._cache) == 1
    assert 0 < renderer._cached <= 5000
