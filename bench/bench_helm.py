"""Benchmark Helm rendering, SOPS decryption and signature verification in the desired-state loader.

Figures (seconds per load of one environment, median of ``--repeat``):

- Helm: podinfo (values-prod) + kube-state-metrics rendered (cold: two ``helm template`` runs), a new
  commit touching neither chart nor values (cache hit: no helm run), a values change (one run). Baseline
  in the same run: the same environment as plain manifests (the rendered YAML committed as files).
- SOPS: ``--secrets`` encrypted Secrets decrypted (cold: one sops run each), then a commit touching none
  of them (cache hit). Baseline: the same Secrets in clear text.
- Signatures: loads of SSH-signed commits (one ``ssh-keygen`` verification each) vs the same without
  ``[environments.signatures]``.

    .venv/bin/python bench/bench_helm.py [--repeat 3] [--secrets 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from driftd.config import SignatureSettings
from driftd.model import ClusterInfo
from driftd.sources.helm import HelmRenderer
from driftd.sources.loader import DesiredStateLoader
from driftd.sources.sops import SopsDecryptor
from tests.tools_support import CORPUS_HELM, Work, cache_for, env_settings, helm, sops, system_tool

RELEASES = """releases:
  - name: podinfo
    chart: ../charts/podinfo
    values_files: [podinfo-prod.yaml]
    values: {{replicaCount: {n}}}
  - name: ksm
    chart: ../charts/kube-state-metrics
"""


async def _info() -> ClusterInfo:
    return ClusterInfo("v1.34.4", ("v1", "apps/v1", "autoscaling/v2"))


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    t = time.perf_counter()
    await fn()
    return time.perf_counter() - t


async def bench_helm(root: Path, repeat: int) -> None:
    cold, hit, values, plain = [], [], [], []
    for i in range(repeat):
        tmp = root / f"helm{i}"
        tmp.mkdir()
        work = Work(tmp)
        work.copy(CORPUS_HELM / "podinfo", "charts/podinfo")
        work.copy(CORPUS_HELM / "kube-state-metrics", "charts/kube-state-metrics")
        work.commit({"k8s/driftd-helm.yaml": RELEASES.format(n=1),
                     "k8s/podinfo-prod.yaml": (CORPUS_HELM / "podinfo/values-prod.yaml").read_text()})
        cache = cache_for(work, tmp)
        loader = DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm()))
        env = env_settings()

        async def load() -> None:
            await cache.fetch()
            r = await loader.load(env, cluster=_info)
            assert r.ok, r.error

        cold.append(await timed(load))
        work.commit({"k8s/unrelated.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\n"})
        hit.append(await timed(load))
        work.commit({"k8s/driftd-helm.yaml": RELEASES.format(n=2)})
        values.append(await timed(load))
        assert loader.helm.renders == 3
        # Baseline: the rendered output committed as plain manifests.
        out = (await anyio.run_process([helm(), "template", "podinfo", str(work.dir / "charts/podinfo"), "-f",
                                        str(work.dir / "k8s/podinfo-prod.yaml"), "--kube-version", "v1.34.4",
                                        "--skip-tests", "--no-hooks"])).stdout
        ptmp = root / f"plain{i}"
        ptmp.mkdir()
        pwork = Work(ptmp)
        pwork.commit({"k8s/rendered.yaml": out})
        pcache = cache_for(pwork, ptmp)
        ploader = DesiredStateLoader({"envs": pcache})

        async def pload() -> None:
            await pcache.fetch()
            assert (await ploader.load(env)).ok

        plain.append(await timed(pload))
    print(f"helm: cold load (2 releases rendered)      {statistics.median(cold):7.3f} s")
    print(f"helm: new commit, chart+values unchanged   {statistics.median(hit):7.3f} s (no helm run)")
    print(f"helm: inline values changed (1 render)     {statistics.median(values):7.3f} s")
    print(f"baseline: same podinfo objects as plain YAML {statistics.median(plain):7.3f} s")


async def bench_sops(root: Path, repeat: int, n: int) -> None:
    cold, hit, plain = [], [], []
    for i in range(repeat):
        tmp = root / f"sops{i}"
        tmp.mkdir()
        key = tmp / "k.agekey"
        await anyio.run_process([system_tool("age-keygen"), "-o", str(key)])
        recipient = next(ln.split(": ")[1] for ln in key.read_text().splitlines() if ln.startswith("# public key"))
        files: dict[str, str | bytes | None] = {}
        clear: dict[str, str | bytes | None] = {}
        for j in range(n):
            doc = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s{j}}}\nstringData: {{password: pw{j}}}\n"
            p = tmp / f"s{j}.yaml"
            p.write_text(doc)
            files[f"k8s/s{j}.yaml"] = (await anyio.run_process(
                [sops(), "encrypt", "--age", recipient, "--encrypted-regex", "^stringData$", str(p)],
                env={"HOME": str(tmp)})).stdout
            clear[f"k8s/s{j}.yaml"] = doc
            p.unlink()
        work = Work(tmp)
        work.commit(files)
        cache = cache_for(work, tmp)
        loader = DesiredStateLoader({"envs": cache}, sops=SopsDecryptor(sops()))
        env = dataclasses.replace(env_settings(), sops_age_key_file=key)

        async def load() -> None:
            await cache.fetch()
            r = await loader.load(env)
            assert r.ok, r.error

        cold.append(await timed(load))
        work.commit({"k8s/unrelated.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: u}\n"})
        hit.append(await timed(load))
        ptmp = root / f"sopsplain{i}"
        ptmp.mkdir()
        pwork = Work(ptmp)
        pwork.commit(dict(clear))
        pcache = cache_for(pwork, ptmp)
        ploader = DesiredStateLoader({"envs": pcache})

        async def pload() -> None:
            await pcache.fetch()
            assert (await ploader.load(env_settings())).ok

        plain.append(await timed(pload))
    print(f"sops: cold load, {n} encrypted Secrets        {statistics.median(cold):7.3f} s "
          f"({statistics.median(cold) / n * 1000:.0f} ms per file)")
    print(f"sops: new commit, none of them changed     {statistics.median(hit):7.3f} s (no sops run)")
    print(f"baseline: the same Secrets in clear text   {statistics.median(plain):7.3f} s")


async def bench_signatures(root: Path, repeat: int) -> None:
    signed, unsigned = [], []
    tmp = root / "sig"
    tmp.mkdir()
    key = tmp / "ann"
    await anyio.run_process([system_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    work = Work(tmp)
    cache = cache_for(work, tmp)
    loader = DesiredStateLoader({"envs": cache})
    env = env_settings()
    senv = dataclasses.replace(env, signatures=SignatureSettings((Path(f"{key}.pub"),)))
    for i in range(repeat * 3):
        work.commit({"k8s/a.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\ndata: {{v: '{i}'}}\n"},
                    sign=["gpg.format=ssh", f"user.signingkey={key}"])
        await cache.fetch()
        unsigned.append(await timed(lambda: loader.load(dataclasses.replace(env, name=f"u{i}"))))
        signed.append(await timed(lambda: loader.load(dataclasses.replace(senv, name=f"s{i}"))))
    print(f"signatures: load of a new SSH-signed commit  {statistics.median(signed):7.3f} s (verified)")
    print(f"baseline: the same load, no verification   {statistics.median(unsigned):7.3f} s")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="driftd-bench-helm-") as d:
        root = Path(d)
        await bench_helm(root, args.repeat)
        await bench_sops(root, args.repeat, args.secrets)
        await bench_signatures(root, args.repeat)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--secrets", type=int, default=10)
    anyio.run(main, p.parse_args())
