"""One `driftd run` replica watching 10,000 objects: 20 environments x 500 (Deployments, Services, ConfigMaps).

    DRIFTD_SANDBOX=/path/to/sandbox .venv/bin/python bench/bench_scale.py [--envs 20] [--objects 500]
        [--changes 60] [--idle 60] [--parallel 48]

The objects are created through the API in parallel (server-side apply with field manager driftd, as
a GitOps pipeline or an earlier driftd revert would leave them; aiohttp with the sandbox's admin
certificate), the same manifests are committed to Git. Then, against one `driftd run`:

- start: process start until every environment has been checked once (/api/v1/environments);
- detection latency over --changes changes in alert-mode environments (a human-style merge patch ->
  `detected` row committed) and revert latency over --changes changes in enforce-mode environments
  (patch -> `reverted` row committed); changes cycle over the environments and kinds;
- idle for --idle seconds: CPU, RSS, API requests.

Prints figures (min/median/p99/max); asserts nothing. Targets (issue 16): detection p99 < 1 s, revert
p99 < 2 s, start < 60 s, RSS < 400 MB, idle 0 API requests and < 1% of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_daemon import api_calls, pct, proc_stats  # noqa: E402
from tests.daemon_support import DaemonProc, GitRepo, configmap, deployment, wait_for, write_config  # noqa: E402
from tests.sandbox import Sandbox  # noqa: E402
from tests.sandbox.procs import free_port  # noqa: E402

KINDS = ("Deployment", "Service", "ConfigMap")
PATHS = {"Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
         "Service": "/api/v1/namespaces/{ns}/services",
         "ConfigMap": "/api/v1/namespaces/{ns}/configmaps"}


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def objects(n: int) -> list[dict[str, Any]]:
    """n objects, the three kinds in turn."""
    out = []
    for j in range(n):
        kind = KINDS[j % 3]
        name = f"{kind[0].lower()}{j:04d}"
        out.append(deployment(name, 1) if kind == "Deployment" else service(name) if kind == "Service"
                   else configmap(name, {"k": str(j)}))
    return out


class Kube:
    """Just enough of the API for the benchmark: aiohttp with the sandbox's admin client certificate."""

    def __init__(self, sb: Sandbox, parallel: int) -> None:
        ctx = ssl.create_default_context(cafile=sb.kube_ca)
        ctx.load_cert_chain(sb.kube_client_cert, sb.kube_client_key)
        self.base = sb.kube_server.rstrip("/")
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=parallel))
        self.sem = asyncio.Semaphore(parallel)

    async def close(self) -> None:
        await self.session.close()

    async def req(self, method: str, path: str, body: Any, content_type: str, **query: str) -> None:
        async with self.sem:
            for attempt in range(5):
                async with self.session.request(method, self.base + path, params=query, data=json.dumps(body),
                                                headers={"Content-Type": content_type}) as r:
                    if r.status < 300:
                        return
                    text = await r.text()
                    if r.status not in (429, 500, 503) or attempt == 4:
                        raise RuntimeError(f"{method} {path}: {r.status} {text[:300]}")
                await asyncio.sleep(0.5 * (attempt + 1))

    async def apply(self, ns: str, obj: dict[str, Any]) -> None:
        path = PATHS[obj["kind"]].format(ns=ns) + "/" + obj["metadata"]["name"]
        await self.req("PATCH", path, obj, "application/apply-patch+yaml", fieldManager="driftd", force="true")

    async def label(self, ns: str, kind: str, name: str, value: str | None) -> None:
        """A person's change: a label added (or removed) with kubectl's field manager."""
        path = PATHS[kind].format(ns=ns) + "/" + name
        await self.req("PATCH", path, {"metadata": {"labels": {"bench": value}}}, "application/merge-patch+json",
                       fieldManager="kubectl-label")

    async def namespace(self, ns: str) -> None:
        await self.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": ns}}, "application/json")


def event_after(state: Path, env: str, name: str, event: str, after_id: int) -> tuple[float, int] | None:
    c = sqlite3.connect(state / "driftd.db", timeout=5)
    try:
        row = c.execute("SELECT ts, id FROM events WHERE env = ? AND name = ? AND event = ? AND id > ? ORDER BY id "
                        "LIMIT 1", (env, name, event, after_id)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        c.close()
    return (float(row[0]), int(row[1])) if row else None


def summary(label: str, xs: list[float]) -> str:
    return (f"{label} over {len(xs)} changes: min {min(xs):.3f}s  median {statistics.median(xs):.3f}s  "
            f"p99 {pct(xs, 99):.3f}s  max {max(xs):.3f}s")


async def create_all(kube: Kube, nss: list[str], docs: list[dict[str, Any]]) -> None:
    await asyncio.gather(*(kube.namespace(ns) for ns in nss))
    await asyncio.gather(*(kube.apply(ns, d) for ns in nss for d in docs))


async def change(kube: Kube, ns: str, kind: str, name: str, value: str | None) -> float:
    t = time.time()
    await kube.label(ns, kind, name, value)
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=20)
    ap.add_argument("--objects", type=int, default=500)
    ap.add_argument("--changes", type=int, default=60)
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--parallel", type=int, default=48)
    args = ap.parse_args()
    sb = Sandbox.load(os.environ["DRIFTD_SANDBOX"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    tag = uuid.uuid4().hex[:6]
    loop = asyncio.new_event_loop()

    async def open_kube() -> Kube:
        return Kube(sb, args.parallel)  # aiohttp wants its loop running

    kube = loop.run_until_complete(open_kube())
    docs = objects(args.objects)
    nss = [f"scale-{tag}-{i:02d}" for i in range(args.envs)]
    total = args.envs * args.objects
    t0 = time.monotonic()
    loop.run_until_complete(create_all(kube, nss, docs))
    took = time.monotonic() - t0
    print(f"setup: {total} objects ({args.envs} namespaces x {args.objects}: Deployments, Services, ConfigMaps) "
          f"created by server-side apply, {args.parallel} in parallel, in {took:.1f}s ({total / took:.0f}/s)")
    repo = GitRepo(sb, f"scale-{tag}.git", tmp / "work")
    repo.commit({f"e{i:02d}/app.yaml": docs for i in range(args.envs)})
    envs = [{"name": f"e{i:02d}", "mode": "alert" if i % 2 == 0 else "enforce",
             "kubernetes": {"cluster": "sandbox", "namespace": nss[i], "path": f"e{i:02d}"},
             "brakes": {"storm_min_objects": 100000}} for i in range(args.envs)]
    state, port = tmp / "state", free_port()
    cfg = write_config(tmp / "driftd.toml", sb, repo_url=repo.url, state_dir=state, port=port, envs=envs, poll="30s")
    d = DaemonProc(cfg, state, port, tmp / "driftd.log")
    try:
        t0 = time.monotonic()
        d.start()
        d.wait_checked(*(e["name"] for e in envs), timeout=900)
        print(f"start: every environment checked {time.monotonic() - t0:.1f}s after the process started")
        assert d.proc is not None
        _, rss_loaded = proc_stats(d.proc.pid)
        detect: list[float] = []
        revert: list[float] = []
        rnd = random.Random(16)
        last = 0
        alert_envs = [i for i in range(args.envs) if envs[i]["mode"] == "alert"]
        enforce_envs = [i for i in range(args.envs) if envs[i]["mode"] == "enforce"]
        for n in range(args.changes * 2):
            pool = alert_envs if n % 2 == 0 else enforce_envs
            i = pool[(n // 2) % len(pool)]
            obj = docs[rnd.randrange(len(docs))]
            kind, name = obj["kind"], obj["metadata"]["name"]
            ev = "detected" if envs[i]["mode"] == "alert" else "reverted"
            start = loop.run_until_complete(change(kube, nss[i], kind, name, f"n{n}"))
            got = wait_for(lambda i=i, name=name, ev=ev: event_after(state, f"e{i:02d}", name, ev, last), 30,
                           f"{ev} e{i:02d}/{name}")
            last = got[1]
            (detect if ev == "detected" else revert).append(got[0] - start)
            if ev == "detected":  # put it back, so the next change to it is a new drift
                loop.run_until_complete(kube.label(nss[i], kind, name, None))
        time.sleep(5)
        print(summary("detection latency (alert mode) ", detect))
        print(summary("revert latency (enforce mode)  ", revert))
        cpu0, _ = proc_stats(d.proc.pid)
        calls0, applies0 = api_calls(port)
        time.sleep(args.idle)
        cpu1, rss = proc_stats(d.proc.pid)
        calls1, applies1 = api_calls(port)
        print(f"idle for {args.idle:.0f}s: CPU {(cpu1 - cpu0) / args.idle * 100:.2f}% of a core, "
              f"API requests {calls1 - calls0:.0f} (dry-run/apply {applies1 - applies0:.0f}); "
              f"RSS {rss:.0f} MB (after start {rss_loaded:.0f} MB)")
    finally:
        print(f"daemon exit code {d.stop()}")
        loop.run_until_complete(kube.close())
        loop.close()
        for ns in nss:
            sb.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
