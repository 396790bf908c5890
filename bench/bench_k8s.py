"""Kubernetes drift check at scale: driftd vs `kubectl diff -f`, same objects, same API server, same run.

    DRIFTD_SANDBOX=DIR .venv/bin/python bench/bench_k8s.py [--namespaces 200] [--without-proof]
        [--concurrency 16] [--cluster-ips]

The corpus's namespaced objects (10 per copy) are replicated across N namespaces (200 -> 2,000
objects) and synced by driftd. Services are made headless unless --cluster-ips: the sandbox's
/24 service range holds ~250 cluster IPs (3 Services per namespace). Then: a cold check (fresh
target: discovery, LISTs, objects proven in sync from their managedFields without a dry run,
one dry run per kind whose declared quantities the server rewrites), a warm check (verdict
cache: no dry run), optionally a cold check dry-running every object, and `kubectl diff -f` on a
file holding the same objects. Prints wall times, API requests and dry runs per check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from driftd.config import ClusterSettings, EnvironmentSettings, KubernetesEnvSettings  # noqa: E402
from driftd.model import DesiredObject, DesiredState, ResourceKey, TargetKind  # noqa: E402
from driftd.targets.kubernetes.target import KubernetesTarget  # noqa: E402
from tests.sandbox import Sandbox  # noqa: E402

CORPUS = next(p for p in (ROOT / "tests/data/corpus/kubernetes", Path("/work/shared/corpus/kubernetes")) if p.is_dir())
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "APIService"}


def objects(n: int, headless: bool = False) -> list[dict[str, Any]]:
    base = []
    for d in sorted(CORPUS.iterdir()):
        if d.is_dir():
            text = subprocess.run(["kubectl", "kustomize", str(d)], capture_output=True, text=True, check=True).stdout
            base += [o for o in yaml.safe_load_all(text) if o and o["kind"] not in CLUSTER_SCOPED]
    out = []
    for i in range(n):
        for o in base:
            c = yaml.safe_load(yaml.safe_dump(o))
            c["metadata"]["namespace"] = f"bench-{i:04d}"
            if headless and c["kind"] == "Service":
                c["spec"]["clusterIP"] = "None"
            out.append(c)
    return out


def state(objs: list[dict[str, Any]]) -> DesiredState:
    return DesiredState("bench", tuple(
        DesiredObject(ResourceKey(TargetKind.KUBERNETES, o["kind"], o["metadata"]["name"], o["metadata"]["namespace"],
                                  o["apiVersion"]), o, f"bench#{i}") for i, o in enumerate(objs)))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespaces", type=int, default=200)
    ap.add_argument("--cleanup-only", action="store_true")
    ap.add_argument("--cluster-ips", action="store_true",
                    help="keep the corpus's ClusterIP Services (3 per namespace: the /24 range fits ~80 namespaces); "
                         "by default they are made headless, which needs no IP")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--without-proof", action="store_true",
                    help="also time a cold check that dry-runs every object (diff.noop off)")
    args = ap.parse_args()
    sb = Sandbox.load(os.environ["DRIFTD_SANDBOX"])
    if args.cleanup_only:
        await cleanup(ClusterSettings("sb", kubeconfig=Path(sb.kubeconfig), concurrency=16), args.namespaces)
        return
    objs = objects(args.namespaces, headless=not args.cluster_ips)
    ds = state(objs)
    env = EnvironmentSettings("bench", "repo", "main",
                              kubernetes=KubernetesEnvSettings(cluster="sb", namespace="default"))
    cluster = ClusterSettings("sb", kubeconfig=Path(sb.kubeconfig), concurrency=args.concurrency)
    nss = "".join(f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench-{i:04d}\n"
                  for i in range(args.namespaces))
    subprocess.run(["kubectl", "--kubeconfig", sb.kubeconfig, "apply", "--server-side", "-f", "-"],  # noqa: ASYNC221
                   input=nss,
                   text=True, check=True, capture_output=True)
    t = KubernetesTarget(cluster)
    t0 = time.perf_counter()
    r = await t.check(env, ds, inventory=frozenset())
    if r.drifts:
        await t.revert(env, ds, r.drifts)
    print(f"setup: {len(objs)} objects in {args.namespaces} namespaces, synced in {time.perf_counter() - t0:.1f}s "
          f"({len(r.drifts)} needed a revert)")
    await t.aclose()

    t = KubernetesTarget(cluster)
    t0 = time.perf_counter()
    r = await t.check(env, ds, inventory=frozenset())
    cold = time.perf_counter() - t0
    cold_dry = t.dry_runs
    print(f"driftd cold check: {cold:.2f}s  {r.api_calls} API requests  {cold_dry} dry runs "
          f"({cold_dry / len(objs):.2f}/object), {t.proven_noops} proven in sync without one  "
          f"drifts={len(r.drifts)} errors={len(r.errors)}")
    t0 = time.perf_counter()
    r = await t.check(env, ds, inventory=frozenset())
    warm = time.perf_counter() - t0
    print(f"driftd warm check: {warm:.2f}s  {r.api_calls} API requests  {t.dry_runs - cold_dry} dry runs  "
          f"drifts={len(r.drifts)}")
    await t.aclose()
    if args.without_proof:
        t = KubernetesTarget(cluster, fast_path=False)
        t0 = time.perf_counter()
        r = await t.check(env, ds, inventory=frozenset())
        print(f"driftd cold check, every object dry-run: {time.perf_counter() - t0:.2f}s  {r.api_calls} API requests"
              f"  {t.dry_runs} dry runs  drifts={len(r.drifts)}")
        await t.aclose()

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(objs, f)
    t0 = time.perf_counter()
    p = subprocess.run(["kubectl", "--kubeconfig", sb.kubeconfig, "diff", "--server-side", "--force-conflicts",  # noqa: ASYNC221
                        "--field-manager=driftd", "-f", f.name], capture_output=True, text=True, check=False)
    kd = time.perf_counter() - t0
    os.unlink(f.name)
    print(f"kubectl diff --server-side -f: {kd:.2f}s (exit {p.returncode}, {len(p.stdout.splitlines())} diff lines)")
    print(f"speed-up: cold {kd / cold:.1f}x, warm {kd / warm:.1f}x (target >= 5x cold)")
    await cleanup(cluster, args.namespaces)


async def cleanup(cluster: ClusterSettings, n: int) -> None:
    """Delete the bench Services: the sandbox's /24 service range holds about 250 cluster IPs."""
    t = KubernetesTarget(cluster)
    client = await t.client()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            for name in ("podinfo", "kube-state-metrics", "metrics-server"):
                tg.start_soon(_delete, client, f"/api/v1/namespaces/bench-{i:04d}/services/{name}")
    await t.aclose()


async def _delete(client: Any, path: str) -> None:
    from driftd.errors import DriftdError

    with contextlib.suppress(DriftdError):
        await client.request("DELETE", path, verb="delete", resource="services")


if __name__ == "__main__":
    anyio.run(main)
