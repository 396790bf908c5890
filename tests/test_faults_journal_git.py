"""Audit before act for Git: an image write-back push is journaled (intent before, outcome after).

`driftd run` with an image policy in alert mode (write-back pushes there); the sandbox's registry
gets a newer tag; driftd commits and pushes. The journal holds exactly one `git` write for it, `done`,
naming the commit the remote branch now points at, with no token in what it recorded.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from registry_support import push_image

from tests.daemon_support import WEB_DEPLOYMENT, DaemonProc, GitRepo, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _git_writes(state: Path) -> list[dict[str, Any]]:
    c = sqlite3.connect(state / "driftd.db")
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM intents WHERE target = 'git' ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def test_write_back_push_is_journaled(sandbox: Sandbox, tmp_path: Path, k8s_namespace: str) -> None:
    tag = uuid.uuid4().hex[:6]
    reg, repo_name, envname = sandbox.registry, f"t/jg-{tag}", f"jg-{tag}"
    image = f"{reg}/{repo_name}"
    push_image(reg, repo_name, "1.0.0")
    manifest = WEB_DEPLOYMENT.replace('- {name: web, image: "IMAGE"}',
                                      '- name: web\n          image: IMAGE # {"driftd.io/image": "web"}').replace(
                                          "IMAGE", f"{image}:1.0.0")
    git = GitRepo(sandbox, f"jg-{tag}.git", tmp_path / "work")
    head = git.commit({"k8s/app.yaml": manifest})
    state, port = tmp_path / "state", free_port()
    env = {"name": envname, "mode": "alert", "interval": "1s",
           "kubernetes": {"cluster": "sandbox", "namespace": k8s_namespace, "path": "k8s"},
           "images": [{"name": "web", "image": image, "semver": "^1", "action": "write-back"}]}
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port,
                       envs=[env], registries=[{"host": reg, "insecure": True}])
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked(envname)
        assert not _git_writes(state)
        push_image(reg, repo_name, "1.4.0")

        def remote_head() -> str:
            return git._git("ls-remote", "--heads", git.url, "main").split()[0]

        new = wait_for(lambda: (h := remote_head()) != head and h, 60, lambda: f"pushed; log:\n{d.tail()}")
        rows = wait_for(lambda: [w for w in _git_writes(state) if w["outcome"]], 10, "the push's outcome")
        assert len(rows) == 1, rows
        w = rows[0]
        assert w["operation"] == "push refs/heads/main", w
        assert w["outcome"] == "done", w
        assert w["reason"] == f"pushed {new}", w
        assert w["env"] == envname
        assert "@" not in w["subject"]  # no userinfo (tokens) in the journal
    finally:
        assert d.stop() == 0, d.tail()
