"""Helpers for the Git-over-the-network tests: run the git CLI as an operator would, and push a
repository of `main` plus N branches to the sandbox over whichever transport the test covers."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.sandbox import Sandbox


def git(*args: str, cwd: Path, ssh_command: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_TERMINAL_PROMPT": "0",
    }
    if ssh_command:
        env["GIT_SSH_COMMAND"] = ssh_command
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and out.returncode:
        raise AssertionError(f"git {shlex.join(args)}: {out.stderr}")
    return out


def repo_with_branches(
    sb: Sandbox,
    tmp_path: Path,
    branches: int,
    *,
    prefix: str,
    push_url: Callable[[str], str],
    ssh_command: str | None = None,
) -> tuple[str, Path]:
    """A repository on the server with `main` plus env-0..env-N; `push_url(name)` says where to push."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}.git"
    sb.new_bare_repo(name)
    work = tmp_path / "work"
    git("init", "--quiet", "--initial-branch=main", str(work), cwd=tmp_path)
    (work / "apps").mkdir()
    (work / "apps" / "cm.yaml").write_text("kind: ConfigMap\n")
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "first", cwd=work)
    for i in range(branches):
        git("branch", f"env-{i}", cwd=work)
    git("remote", "add", "origin", push_url(name), cwd=work)
    git("push", "--quiet", "origin", "--all", cwd=work, ssh_command=ssh_command)
    return name, work


def remote_heads(work: Path) -> dict[str, str]:
    """Branch name -> commit id of every local branch in `work` (what was pushed)."""
    out = git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", cwd=work).stdout.strip()
    return dict(line.split(" ", 1) for line in out.splitlines())
