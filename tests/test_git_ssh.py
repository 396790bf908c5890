"""The repository cache over ssh:// with ssh_key_file + known_hosts_file (sandbox: asyncssh server
running git-upload-pack, driven by the system ssh client through dulwich's subprocess vendor)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import asyncssh
import pytest

from driftd.config import RepositorySettings
from driftd.errors import SourceError
from driftd.sources.git import RepositoryCache
from tests.git_support import git, remote_heads, repo_with_branches
from tests.sandbox import Sandbox

BRANCHES = 40


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    if not sandbox.git_ssh_url:
        pytest.skip(f"the sandbox in {sandbox.dir} predates git-ssh; recreate it")
    return sandbox


def _repo_with_branches(sb: Sandbox, tmp_path: Path, branches: int) -> tuple[str, Path]:
    """A repository with `main` plus env-0..env-N, pushed over ssh:// with the sandbox's key."""
    return repo_with_branches(
        sb, tmp_path, branches, prefix="ssh", push_url=sb.git_ssh_repo_url, ssh_command=sb.git_ssh_command()
    )


def _cache(sb: Sandbox, name: str, tmp_path: Path, key: str | Path, known_hosts: str | Path) -> RepositoryCache:
    settings = RepositorySettings(
        name="config",
        url=sb.git_ssh_repo_url(name),
        ssh_key_file=Path(key),
        known_hosts_file=Path(known_hosts),
        timeout=30,
    )
    return RepositoryCache(settings, tmp_path / "state")


def _other_key(tmp_path: Path) -> tuple[Path, bytes]:
    """A valid ed25519 key the server does not authorize; returns (path, its private bytes)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    data = key.export_private_key("openssh")
    p = tmp_path / "wrong_ed25519"
    p.touch(mode=0o600)
    p.write_bytes(data)
    return p, data


def _key_material(private: bytes, authorized_key_file: str) -> list[str]:
    """The private keys in full and line by line (base64 body lines)."""
    out = []
    for text in (private.decode(), Path(authorized_key_file).read_text()):
        out += [text.strip(), *text.splitlines()[1:-1]]
    return out


@pytest.mark.anyio
async def test_fetches_every_branch_then_a_new_commit_incrementally(sb: Sandbox, tmp_path: Path) -> None:
    name, work = _repo_with_branches(sb, tmp_path, BRANCHES)
    cache = _cache(sb, name, tmp_path, sb.git_ssh_key, sb.git_ssh_known_hosts)

    first = await cache.fetch()
    expected = remote_heads(work)
    assert len(expected) == BRANCHES + 1
    assert dict(first.heads) == expected
    assert set(first.changed) == set(expected)
    assert first.bytes_received > 0
    snap = await cache.read_tree(cache.resolve("env-7"), "apps")
    assert [(f.path, f.data) for f in snap.files] == [("apps/cm.yaml", b"kind: ConfigMap\n")]

    git("checkout", "--quiet", "env-3", cwd=work)
    (work / "apps" / "cm.yaml").write_text("kind: ConfigMap\ndata: {a: b}\n")
    git("commit", "--quiet", "-am", "second", cwd=work)
    git("push", "--quiet", "origin", "env-3", cwd=work, ssh_command=sb.git_ssh_command())

    second = await cache.fetch()
    assert second.changed == ("env-3",)
    assert second.removed == ()
    assert second.heads["env-3"] == remote_heads(work)["env-3"] != first.heads["env-3"]
    # Only the new commit travelled, not the 41 branches again.
    assert 0 < second.bytes_received < first.bytes_received * 2
    snap = await cache.read_tree(cache.resolve("env-3"), "apps")
    assert snap.files[0].data == b"kind: ConfigMap\ndata: {a: b}\n"

    third = await cache.fetch()
    assert third.changed == ()
    assert third.bytes_received == 0


@pytest.mark.anyio
async def test_a_wrong_key_is_a_clear_non_retryable_error_without_key_material(sb: Sandbox, tmp_path: Path) -> None:
    name, _ = _repo_with_branches(sb, tmp_path, 1)
    wrong, private = _other_key(tmp_path)
    cache = _cache(sb, name, tmp_path, wrong, sb.git_ssh_known_hosts)

    with pytest.raises(SourceError) as exc:
        await cache.fetch()
    err = exc.value
    text = str(err)
    assert "permission denied" in text.lower() or "authenticat" in text.lower(), text
    assert str(wrong) in text  # names the key file (the path, not its content)
    assert err.retryable is False
    assert cache.last_error is err
    for chunk in _key_material(private, sb.git_ssh_key):
        assert chunk.strip() not in text
    assert "PRIVATE KEY" not in text


@pytest.mark.anyio
async def test_an_unknown_host_key_is_refused(sb: Sandbox, tmp_path: Path) -> None:
    name, _ = _repo_with_branches(sb, tmp_path, 1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cache = _cache(sb, name, tmp_path, sb.git_ssh_key, empty)

    with pytest.raises(SourceError) as exc:
        await cache.fetch()
    text = str(exc.value)
    assert "host key" in text.lower(), text
    assert str(empty) in text
    assert exc.value.retryable is False
    assert empty.read_text() == ""  # strict checking: nothing was learnt on first use
    assert not (tmp_path / "state" / "git").exists() or cache.heads == {}


def test_the_server_runs_only_git_commands_inside_git_root(sb: Sandbox, tmp_path: Path) -> None:
    name, _ = _repo_with_branches(sb, tmp_path, 0)
    port = sb.git_ssh_url.rsplit(":", 1)[1].strip("/")
    ssh = [*shlex.split(sb.git_ssh_command()), "-p", port, "driftd@127.0.0.1"]

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ssh, command], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    for command in ("cat /etc/passwd", "git-upload-pack '../../etc'", "git-upload-pack '/x' extra", "sh"):
        out = run(command)
        assert out.returncode == 1, (command, out)
        assert "fatal:" in out.stderr
        assert "root:" not in out.stdout
    ls = git("ls-remote", sb.git_ssh_repo_url(name), cwd=tmp_path, ssh_command=sb.git_ssh_command())
    assert "refs/heads/main" in ls.stdout
