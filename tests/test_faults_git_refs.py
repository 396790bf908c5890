"""Git ref names never crash the daemon: a remote branch renamed `rel` -> `rel/v2` and back.

`refs/heads/rel` (a file) and `refs/heads/rel/v2` (a file under a directory `rel`) cannot both exist in
the bare cache. Before the fix, the fetch wrote the new ref before removing the old one, raised
NotADirectoryError outside the error handling and the daemon exited 1; every restart failed the same
way, because the cache persists. Now the rename is mirrored, the environments of the repository follow
(the one whose branch vanished reports error, the others keep passing) and a restart on the persisted
cache works.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _rename(bare: Path, old: str, new: str) -> None:
    """Rename a branch on the server, as its operator would (`git branch -m` handles the clash)."""
    subprocess.run(["git", "-C", str(bare), "branch", "-m", old, new], check=True, capture_output=True)


def test_branch_renamed_into_a_directory_and_back(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = {n: f"gr-{n}-{tag}" for n in ("steady", "rel", "relv2")}
    for namespace in ns.values():
        sandbox.kubectl("create", "namespace", namespace)
    repo = GitRepo(sandbox, f"gitrefs-{tag}.git", tmp_path / "work")
    repo.commit({"k8s/cm.yaml": configmap("settings")}, branch="main")
    repo.commit({"k8s/cm.yaml": configmap("settings")}, branch="rel")
    bare = Path(sandbox.git_root) / f"gitrefs-{tag}.git"
    envs = [{"name": n, "mode": "enforce", "branch": b,
             "kubernetes": {"cluster": "sandbox", "namespace": ns[n], "path": "k8s", "resync_interval": "2s"}}
            for n, b in (("steady", "main"), ("rel", "rel"), ("relv2", "rel/v2"))]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked("steady", "rel")
        assert d.environments()["relv2"]["status"] == "error"  # its branch does not exist yet

        _rename(bare, "rel", "rel/v2")
        wait_for(lambda: (e := d.environments()) and e["relv2"]["status"] == "in_sync"
                 and e["rel"]["status"] == "error", 30, lambda: f"rename mirrored; log:\n{d.tail()}")
        assert d.alive(), d.tail()
        assert "branch 'rel' does not exist" in d.environments()["rel"]["error"]
        cache = next((state / "git").iterdir())
        assert (cache / "refs" / "heads" / "rel" / "v2").is_file()

        # A restart on the persisted cache works.
        assert d.stop() == 0, d.tail()
        d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
        d.wait_checked("steady", "relv2")

        # And back: `rel` is a directory in the cache now, the new ref a file in its place.
        _rename(bare, "rel/v2", "rel")
        wait_for(lambda: (e := d.environments()) and e["rel"]["status"] == "in_sync"
                 and e["relv2"]["status"] == "error", 30, lambda: f"rename back mirrored; log:\n{d.tail()}")
        # The other environment kept passing: an out-of-band change is still reverted.
        sandbox.kubectl("-n", ns["steady"], "patch", "configmap", "settings", "-p", '{"data":{"k":"oob"}}')
        wait_for(lambda: sandbox.kubectl_json("-n", ns["steady"], "get", "configmap", "settings")["data"]["k"] == "v",
                 20, "steady reverted")
        assert d.alive(), d.tail()
        assert not [r for r in d.logs() if r.get("event") in ("git.fetch_crashed", "env.crashed")], d.tail()
    finally:
        rc = d.stop()
        for namespace in ns.values():
            sandbox.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert rc == 0, d.tail()
