"""Honest seams: what ``driftd run`` loads is what its configuration needs. A Kubernetes-only config never
imports the AWS client stack (aioboto3/aiobotocore/botocore cost ~0.4 s of import and memory per
process): checked in a fresh interpreter, where sys.modules says what was really imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AWS_STACK = ("botocore", "aiobotocore", "aioboto3", "boto3")
CLIENTS = (*AWS_STACK, "kubernetes_asyncio")

# Builds the daemon and every target its environments use, as the first pass does, then prints which of
# CLIENTS' packages were imported. bench/bench_import.py times the same probe.
PROBE = """
import json, sys
from pathlib import Path
import driftd.daemon
from driftd.config import parse_config
cfg = parse_config(json.loads(sys.argv[1]), Path(sys.argv[2]))
d = driftd.daemon.Daemon(cfg)
for env in cfg.environments:
    for kind, name in d.pool.names(env):
        d.pool.get(kind, name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[3])))))
"""


def loaded_clients(tmp_path: Path, config: dict[str, object]) -> list[str]:
    """The client packages (of CLIENTS) a fresh interpreter imports for ``config``."""
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(config), str(tmp_path / "driftd.toml"),
                          json.dumps(CLIENTS)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def probe_config(tmp_path: Path, *, aws: bool) -> dict[str, object]:
    """One Kubernetes environment; with ``aws``, an AWS account and the same environment's AWS part too."""
    env: dict[str, object] = {"name": "prod", "repository": "envs", "branch": "main",
                              "kubernetes": {"cluster": "c"}}
    cfg: dict[str, object] = {"daemon": {"state_dir": str(tmp_path / "state")}, "clusters": [{"name": "c"}],
                              "repositories": [{"name": "envs", "url": "https://git.example.com/envs.git"}],
                              "environments": [env]}
    if aws:
        cfg["aws_accounts"] = [{"name": "a", "region": "eu-west-1"}]
        env["aws"] = {"account": "a"}
    return cfg


def test_kubernetes_only_daemon_loads_no_aws_client(tmp_path: Path) -> None:
    assert set(loaded_clients(tmp_path, probe_config(tmp_path, aws=False))).isdisjoint(AWS_STACK)


def test_an_aws_environment_does_load_it(tmp_path: Path) -> None:
    """The probe can fail: with an AWS environment the same steps import botocore."""
    assert "botocore" in loaded_clients(tmp_path, probe_config(tmp_path, aws=True))


def test_the_engine_does_not_probe_targets_for_capabilities() -> None:
    """watch, check_objects and cluster_info are declared on the seams (engine/protocols.py, checked by mypy in
    engine/pools.py); the daemon and engine call them, never getattr/hasattr them."""
    import ast

    probed = []
    for path in [ROOT / "driftd" / "daemon.py", *sorted((ROOT / "driftd" / "engine").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr") \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in ("watch", "check_objects", "subscribe", "cluster_info"):
                probed.append(f"{path.name}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    assert probed == []
