"""One daemon per state directory; `driftd check` with a read-only state directory.

- A second `driftd run` on the same state_dir exits 2 at once, naming the pid that holds it; the first
  keeps running. After the first is SIGKILLed the lock is free again (the kernel drops flock locks).
- `driftd check` whose state_dir it cannot write (a CI user, a read-only mount) still checks: it reads
  what it can, says what it lacks on stderr, and never dies with a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.daemon_support import ROOT, DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox]


def _driftd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftd", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def setup(sandbox: Sandbox, tmp_path: Path, k8s_namespace: str) -> tuple[Path, Path, int]:
    repo = GitRepo(sandbox, f"lock-{uuid.uuid4().hex[:6]}.git", tmp_path / "work")
    repo.commit({"k8s/cm.yaml": configmap("settings")})
    sandbox.kubectl("-n", k8s_namespace, "create", "configmap", "settings", "--from-literal=k=v")
    envs = [{"name": "one", "mode": "observe",
             "kubernetes": {"cluster": "sandbox", "namespace": k8s_namespace, "path": "k8s"}}]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    return cfg, state, port


def test_second_daemon_on_one_state_dir_exits_2_naming_the_holder(setup: tuple[Path, Path, int],
                                                                   tmp_path: Path) -> None:
    cfg, state, port = setup
    first = DaemonProc(cfg, state, port, tmp_path / "first.log").start()
    try:
        first.wait_checked("one")
        assert first.proc is not None
        other = tmp_path / "second.toml"
        other.write_text(cfg.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}"))
        out = _driftd("run", "-c", str(other), timeout=30)
        assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
        assert f"pid {first.proc.pid}" in out.stderr, out.stderr
        assert "in use by another driftd run" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
        assert first.alive()
        first.kill9()
        # The kernel released the lock with the process: a restart takes it.
        again = DaemonProc(cfg, state, port, tmp_path / "again.log").start()
        again.wait_checked("one")
        assert again.stop() == 0, again.tail()
    finally:
        if first.alive():
            first.stop()


def test_check_with_a_read_only_state_dir(setup: tuple[Path, Path, int], tmp_path: Path) -> None:
    cfg, state, port = setup
    d = DaemonProc(cfg, state, port, tmp_path / "d.log").start()
    d.wait_checked("one")
    assert d.stop() == 0
    # Read-only for everyone, root included (root ignores file modes): a read-only bind mount.
    ro = tmp_path / "ro-state"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(state), str(ro)], capture_output=True, text=True)
    if mounted.returncode != 0:
        subprocess.run(["mount", "--bind", str(state), str(ro)], capture_output=True)
        mounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here: {mounted.stderr.strip()}")
    try:
        assert subprocess.run(["touch", str(ro / "probe")], capture_output=True).returncode != 0, "mount is not ro"
        check_cfg = tmp_path / "check.toml"
        check_cfg.write_text(cfg.read_text().replace(str(state), str(ro)))
        out = _driftd("check", "-c", str(check_cfg), "-o", "json")
        assert "Traceback" not in out.stderr, out.stderr
        assert out.returncode == 0, (out.returncode, out.stdout, out.stderr)
        report = json.loads(out.stdout)
        assert report["environments"][0]["status"] == "in_sync", report
        assert "read-only" in out.stderr or "not writable" in out.stderr, out.stderr
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
    wait_for(lambda: not os.path.ismount(ro), 5, "unmounted")
