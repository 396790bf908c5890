"""Benchmark the bounded YAML loader: hostile and ordinary trees up to 10 MB, CPU and extra memory each.

Target (issue #14 §1): any tree up to 10 MB is parsed within 2 s of CPU and 256 MB of extra memory, or
refused. Each case runs in a fresh subprocess (peak RSS is per process) the way the loader parses a tree:
file by file with one :class:`~driftd.sources.yamlsafe.Budget`, results kept (as the parse cache would).
Also: Argo CD's install.yaml (1.9 MB, 59 objects; issue #16 §3 target < 0.5 s) when given with --argocd,
and the per-file cost of small manifests with libyaml underneath vs the pure-Python parser.

    .venv/bin/python bench/bench_yaml.py [--argocd PATH/install.yaml] [--runs 3] [--only CASE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1024 * 1024
DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  labels: {{app: app-{i}, tier: backend}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: app-{i}}}
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      containers:
      - name: app
        image: registry.example.com/app-{i}:1.0.0
        env: [{{name: A, value: "1"}}, {{name: B, value: "2"}}]
        ports: [{{containerPort: 8080}}]
        resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}
"""


def alias_doc(n: int) -> str:
    """~234,000 nodes once expanded (under the per-document limit of 250,000), ~300 bytes."""
    lines = [f"n{n}: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 5)]
    lines.append("b: [*a4]")
    return "\n".join(lines) + "\n"


def alias_file(documents: int, size: int) -> bytes:
    docs = "".join("---\n" + alias_doc(n) for n in range(documents))
    return (docs + "#" + "p" * max(0, size - len(docs) - 2) + "\n").encode()


def fill(make: object, total: int) -> dict[str, bytes]:
    """Files from ``make(i) -> bytes`` until ``total`` bytes."""
    out: dict[str, bytes] = {}
    size, i = 0, 0
    while size < total:
        data = make(i)  # type: ignore[operator]
        out[f"k/f{i:05d}.yaml"] = data
        size += len(data)
        i += 1
    return out


def case_tree(name: str, argocd: str | None) -> dict[str, bytes]:
    if name == "alias-16k-50docs":
        return {"k/aliases.yaml": alias_file(50, 16 * 1024)}
    if name == "alias-64k-200docs":
        return {"k/aliases.yaml": alias_file(200, 64 * 1024)}
    if name == "alias-files-10mb":  # every file within its own budgets: only the tree budget stops it
        return fill(lambda i: alias_file(2, 700), 10 * MB)
    if name == "manifests-10mb":  # ordinary Deployments, 40 per file
        return fill(lambda i: "---\n".join(DEPLOY.format(i=i * 40 + j) for j in range(40)).encode(), 10 * MB)
    if name == "tiny-nodes-10mb":  # the most nodes per byte: one-byte scalars in 4 MB flat lists
        return fill(lambda i: ("[" + ",".join(["x"] * (2 * MB - 2)) + "]\n").encode(), 10 * MB)
    if name == "many-documents-10mb":  # 1,000 empty mappings per file
        return fill(lambda i: b"---\n{}\n" * 1000, 10 * MB)
    if name == "deep-10mb":  # nesting at the depth limit
        return fill(lambda i: (b"[" * 190 + b"x" + b"]" * 190 + b"\n---\n") * 2000, 10 * MB)
    if name == "big-strings-10mb":
        return fill(lambda i: b"data: '" + b"y" * (3 * MB) + b"'\n", 10 * MB)
    if name == "argocd-x5" and argocd:
        data = Path(argocd).read_bytes()
        return {f"k/install-{i}.yaml": data for i in range(5)}
    raise KeyError(name)


CASES = ["alias-16k-50docs", "alias-64k-200docs", "alias-files-10mb", "manifests-10mb", "tiny-nodes-10mb",
         "many-documents-10mb", "deep-10mb", "big-strings-10mb", "argocd-x5"]


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def child(name: str, argocd: str | None) -> None:
    """Parse one tree like the loader does and print a JSON line of figures."""
    from driftd.sources.manifests import parse_file
    from driftd.sources.yamlsafe import DEFAULT_LIMITS, Budget, BudgetExceeded

    tree = case_tree(name, argocd)
    size = sum(len(v) for v in tree.values())
    base_kb = _rss_kb()
    budget = Budget(DEFAULT_LIMITS)
    kept = []
    refused = ""
    c0 = time.process_time()
    for path, data in tree.items():
        p = parse_file(data, path, DEFAULT_LIMITS, budget)
        kept.append(p)
        if p.error is not None:
            refused = str(p.error)[:160]
            if isinstance(p.error, BudgetExceeded):
                break
    cpu = time.process_time() - c0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"case": name, "mb": size / MB, "files": len(tree), "cpu_s": cpu,
                      "extra_mb": max(0, peak_kb - base_kb) / 1024, "nodes": budget.nodes,
                      "refused": refused}))


def per_file_cost(runs: int) -> None:
    """Small manifests: the bounded loader (libyaml underneath) vs PyYAML's plain loaders, no limits."""
    import yaml

    from driftd.sources.manifests import parse_file

    files = [DEPLOY.format(i=i).encode() for i in range(2050)]
    ways = {
        "bounded loader (driftd)": lambda i, d: parse_file(d, f"f{i}.yaml"),
        "yaml CSafeLoader, no limits": lambda i, d: list(yaml.load_all(d, Loader=yaml.CSafeLoader)),
        "yaml SafeLoader (pure Python)": lambda i, d: list(yaml.load_all(d, Loader=yaml.SafeLoader)),
    }
    for label, fn in ways.items():
        times = []
        for _ in range(runs):
            c0 = time.process_time()
            for i, d in enumerate(files):
                fn(i, d)
            times.append(time.process_time() - c0)
        print(f"  2,050 small manifests, {label:30s} cpu min/median/max {min(times):.2f}/"
              f"{statistics.median(times):.2f}/{max(times):.2f} s ({min(times) / 2050 * 1000:.2f} ms/file)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--argocd", help="path of Argo CD's manifests/install.yaml")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.argocd)
        return 0
    print("trees up to 10 MB (target: parsed within 2 s CPU and 256 MB extra, or refused); "
          f"{args.runs} runs each, min/median/max")
    for name in CASES:
        if (args.only and args.only != name) or (name == "argocd-x5" and not args.argocd):
            continue
        rows = []
        for _ in range(args.runs):
            cmd = [sys.executable, __file__, "--child", name] + (["--argocd", args.argocd] if args.argocd else [])
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        cpu = sorted(r["cpu_s"] for r in rows)
        mem = sorted(r["extra_mb"] for r in rows)
        r = rows[0]
        verdict = f"REFUSED: {r['refused']}" if r["refused"] else "parsed"
        ok = cpu[len(cpu) // 2] <= 2.0 and mem[len(mem) // 2] <= 256
        print(f"{name:22s} {r['mb']:5.1f} MB {r['files']:5d} files  cpu {cpu[0]:.2f}/{statistics.median(cpu):.2f}/"
              f"{cpu[-1]:.2f} s  extra {mem[0]:.0f}/{statistics.median(mem):.0f}/{mem[-1]:.0f} MB  "
              f"{r['nodes']:,} nodes  {'within target' if ok else 'OVER TARGET'}  {verdict}")
    if args.argocd and not args.only:
        from driftd.sources.yamlsafe import load_documents
        data = Path(args.argocd).read_bytes()
        times = []
        for _ in range(args.runs):
            c0 = time.process_time()
            docs = load_documents(data, "install.yaml")
            times.append(time.process_time() - c0)
        print(f"argo-cd install.yaml {len(data) / MB:.2f} MB, {sum(1 for d in docs if d.value)} objects, "
              f"{sum(d.nodes for d in docs):,} nodes: cpu min/median/max {min(times):.3f}/"
              f"{statistics.median(times):.3f}/{max(times):.3f} s (target < 0.5 s)")
    if not args.only:
        per_file_cost(args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
