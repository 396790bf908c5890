"""The repository cache over smart HTTP with a token (sandbox: git http-backend behind basic auth)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from driftd.config import RepositorySettings
from driftd.errors import SourceError
from driftd.sources.git import RepositoryCache
from tests.git_support import git, remote_heads, repo_with_branches
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    if not sandbox.git_http_url:
        pytest.skip(f"the sandbox in {sandbox.dir} predates git-http; recreate it")
    return sandbox


def _repo_with_branches(sb: Sandbox, tmp_path: Path, branches: int) -> tuple[str, Path]:
    """A repository on the server with `main` plus env-0..env-N, pushed over authenticated HTTP."""
    return repo_with_branches(
        sb, tmp_path, branches, prefix="http", push_url=lambda name: sb.git_http_repo_url(name, with_credentials=True)
    )


def _token_file(tmp_path: Path, token: str, name: str = "token") -> Path:
    p = tmp_path / name
    p.write_text(token + "\n")
    p.chmod(0o600)
    return p


def _cache(sb: Sandbox, name: str, tmp_path: Path, token_file: Path | None, username: str | None) -> RepositoryCache:
    settings = RepositorySettings(
        name="config", url=sb.git_http_repo_url(name), token_file=token_file, username=username, timeout=30
    )
    return RepositoryCache(settings, tmp_path / "state")


@pytest.mark.anyio
async def test_fetches_many_branches_with_token_file(sb: Sandbox, tmp_path: Path) -> None:
    name, work = _repo_with_branches(sb, tmp_path, branches=40)
    cache = _cache(sb, name, tmp_path, _token_file(tmp_path, sb.git_http_token), sb.git_http_user)

    result = await cache.fetch()

    assert dict(result.heads) == remote_heads(work)
    assert len(result.heads) == 41
    assert result.bytes_received > 0
    snap = await cache.read_tree(cache.resolve("env-7"), "apps")
    assert [(f.path, f.data) for f in snap.files] == [("apps/cm.yaml", b"kind: ConfigMap\n")]


@pytest.mark.anyio
async def test_new_commit_is_fetched_incrementally(sb: Sandbox, tmp_path: Path) -> None:
    name, work = _repo_with_branches(sb, tmp_path, branches=5)
    # Enough history that a full re-transfer would be visibly larger than one new commit.
    for i in range(20):
        (work / "apps" / f"f{i}.yaml").write_bytes(os.urandom(2000).hex().encode())
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", f"c{i}", cwd=work)
    git("push", "--quiet", "--force", "origin", "main", cwd=work)
    cache = _cache(sb, name, tmp_path, _token_file(tmp_path, sb.git_http_token), sb.git_http_user)
    first = await cache.fetch()

    git("checkout", "--quiet", "env-3", cwd=work)
    (work / "apps" / "cm.yaml").write_text("kind: ConfigMap\nchanged: true\n")
    git("commit", "--quiet", "-am", "change env-3", cwd=work)
    git("push", "--quiet", "origin", "env-3", ":env-4", cwd=work)
    new_sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()

    second = await cache.fetch()

    assert second.changed == ("env-3",)
    assert second.removed == ("env-4",)
    assert cache.resolve("env-3") == new_sha
    assert 0 < second.bytes_received < first.bytes_received / 10
    third = await cache.fetch()
    assert (third.changed, third.removed, third.bytes_received) == ((), (), 0)


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["wrong-token", "wrong-user", "no-token-file"])
async def test_rejected_credentials_give_a_clear_error_without_the_token(
    sb: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    name, _ = _repo_with_branches(sb, tmp_path, branches=1)
    wrong = "wrong-" + uuid.uuid4().hex
    token_file = None
    if case != "no-token-file":
        token_file = _token_file(tmp_path, wrong if case == "wrong-token" else sb.git_http_token)
    user = "someone-else" if case == "wrong-user" else sb.git_http_user
    cache = _cache(sb, name, tmp_path, token_file, user)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(SourceError) as info:
        await cache.fetch()

    err = info.value
    text = str(err)
    assert "401" in text or "authentication" in text.lower(), text
    assert "repository config" in text
    assert sb.git_http_repo_url(name) in text
    # Rejected credentials stay rejected until someone fixes the token: no point retrying quickly.
    assert err.retryable is False
    assert cache.last_error is err
    captured = capsys.readouterr()
    everything = "\n".join([text, repr(err), str(err.__cause__), caplog.text, captured.out, captured.err])
    for secret in (wrong, sb.git_http_token):
        assert secret not in everything


@pytest.mark.anyio
async def test_nothing_listening_is_a_retryable_source_error(sb: Sandbox, tmp_path: Path) -> None:
    token = _token_file(tmp_path, sb.git_http_token)
    settings = RepositorySettings(
        name="config",
        url=f"http://127.0.0.1:{free_port()}/x.git",
        token_file=token,
        username=sb.git_http_user,
        timeout=30,
    )
    cache = RepositoryCache(settings, tmp_path / "state")

    with pytest.raises(SourceError) as info:
        await cache.fetch()

    assert info.value.retryable is True
    assert "cannot fetch" in str(info.value)
    assert sb.git_http_token not in str(info.value)


@pytest.mark.anyio
async def test_missing_repository_over_http(sb: Sandbox, tmp_path: Path) -> None:
    cache = _cache(sb, "does-not-exist.git", tmp_path, _token_file(tmp_path, sb.git_http_token), sb.git_http_user)

    with pytest.raises(SourceError) as info:
        await cache.fetch()

    assert "does-not-exist.git" in str(info.value)
    assert "no Git repository at this URL (HTTP 404)" in str(info.value)
    assert sb.git_http_token not in str(info.value)
