"""Benchmark: 200 image policies across 5 real registries (docker-registry 2.8 on loopback).

Starts 5 docker-registry processes on free ports in a temp dir, pushes 40 repositories with
TAGS tags each to every one, then polls them with driftd.engine.images.ImagePoller (one
environment per registry, 40 semver policies each, every environment one minor version behind)
and prints requests per poll and wall time, cold and warm.

    .venv/bin/python bench/bench_registry.py [--tags 6] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from driftd.config import parse_config  # noqa: E402
from driftd.engine.images import ImagePoller, MemoryKeyValueStore  # noqa: E402
from driftd.model import DesiredObject, DesiredState, ResourceKey, TargetKind  # noqa: E402
from driftd.sources.registry import Registries  # noqa: E402
from tests.sandbox.procs import free_port  # noqa: E402

REGISTRIES, REPOS = 5, 40


def start_registry(d: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    d.mkdir(parents=True)
    (d / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(d / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": os.urandom(8).hex()}}))
    p = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
            return p, host
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not start")


def _req(method: str, url: str, data: bytes = b"", ctype: str = "application/octet-stream") -> tuple[int, dict]:
    r = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.status, dict(resp.headers)


def push_repo(host: str, repo: str, tags: list[str]) -> None:
    """Two blobs once (POST + PUT each), then one manifest PUT per tag."""
    digests = []
    for blob in (b'{"architecture":"amd64","os":"linux"}', repo.encode()):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        _, h = _req("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
        loc = h["Location"]
        loc = loc if loc.startswith("http") else f"http://{host}{loc}"
        _req("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={d}", blob)
        digests.append((d, len(blob)))
    mt = "application/vnd.oci.image.manifest.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digests[0][0], "size": digests[0][1]},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": digests[1][0], "size": digests[1][1]}]}).encode()
    for t in tags:
        _req("PUT", f"http://{host}/v2/{repo}/manifests/{t}", manifest, mt)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tags", type=int, default=6, help="tags per repository")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight per registry")
    args = ap.parse_args()
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry not found (Debian package docker-registry)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    procs = []
    try:
        hosts = []
        for i in range(REGISTRIES):
            p, h = start_registry(tmp / f"r{i}")
            procs.append(p)
            hosts.append(h)
        tags = [f"1.{i}.0" for i in range(args.tags)] + ["latest", "sha256-abc.sig"]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda hr: push_repo(hr[0], hr[1], tags),
                        [(h, f"team/app{j}") for h in hosts for j in range(REPOS)]))
        print(f"setup: pushed {REGISTRIES * REPOS} repositories x {len(tags)} tags in "
              f"{time.perf_counter() - t0:.1f}s")
        envs, desired = [], {}
        for i, h in enumerate(hosts):
            images = [{"name": f"app{j}", "image": f"{h}/team/app{j}", "semver": "^1"} for j in range(REPOS)]
            envs.append({"name": f"env{i}", "repository": "r", "branch": f"env{i}", "kubernetes": {"cluster": "c"},
                         "images": images})
            body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "all"},
                    "spec": {"template": {"spec": {"containers": [
                        {"name": f"c{j}", "image": f"{h}/team/app{j}:1.{args.tags - 2}.0"} for j in range(REPOS)]}}}}
            key = ResourceKey(TargetKind.KUBERNETES, "Deployment", "all", "default", "apps/v1")
            desired[f"env{i}"] = DesiredState("rev", (DesiredObject(key, body, "k/all.yaml"),))
        cfg = parse_config({
            "daemon": {"state_dir": str(tmp / "state")}, "clusters": [{"name": "c"}],
            "repositories": [{"name": "r", "url": "git://127.0.0.1:1/r"}],
            "registries": [{"host": h, "insecure": True, "concurrency": args.concurrency} for h in hosts],
            "environments": envs}, tmp / "driftd.toml")
        poller = ImagePoller(cfg, MemoryKeyValueStore(), registries=Registries(cfg.registries))
        try:
            for label in ("cold (first poll, digest store empty)", "warm (steady state)", "warm"):
                t0 = time.perf_counter()
                results = []

                async def run(env, results=results):  # type: ignore[no-untyped-def]
                    results.append(await poller.poll(env, desired[env.name]))

                async with anyio.create_task_group() as tg:
                    for env in cfg.environments:
                        tg.start_soon(run, env)
                wall = time.perf_counter() - t0
                reqs = sum(r.registry_requests for r in results)
                findings = sum(len(r.findings) for r in results)
                updates = sum(1 for r in results for f in r.findings if f.kind == "update_available")
                print(f"{label}: {sum(r.policies for r in results)} policies, {REGISTRIES} registries: "
                      f"{reqs} requests ({reqs / 200:.2f}/policy), wall {wall * 1000:.0f} ms, "
                      f"{findings} findings ({updates} update_available)")
        finally:
            await poller.aclose()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main)
