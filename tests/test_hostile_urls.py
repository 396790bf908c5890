"""Issue 14 §4 and §7 (write-back): no credentials in URLs or in what quotes them; Alertmanager
credentials from files; write-back pushes use the repository's client (timeout, known_hosts_file,
never a prompt). Config-side refusals are in tests/test_config.py."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from driftd.alerting.client import AlertmanagerAuth, AlertmanagerClient
from driftd.config import RepositorySettings
from driftd.errors import SourceError
from driftd.sources.git_writeback import commit_and_push_sync
from tests.git_support import git, repo_with_branches
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP endpoint that records the Authorization header of each alert delivery."""
    seen: list[str] = []

    async def alerts(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/api/v2/alerts", alerts)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


@pytest.mark.anyio
async def test_alertmanager_credentials_come_from_files_and_rotate(recorder: tuple[str, list[str]],
                                                                   tmp_path: Path) -> None:
    url, seen = recorder
    tok = tmp_path / "bearer"
    tok.write_text("bearer-one\n")
    c = AlertmanagerClient(5, AlertmanagerAuth(bearer_token_file=tok))
    await c.post(url, [{"labels": {"alertname": "x"}}])
    tok.write_text("bearer-two\n")
    await c.post(url, [{"labels": {"alertname": "x"}}])
    await c.aclose()
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    c = AlertmanagerClient(5, AlertmanagerAuth(username="driftd", password_file=pw))
    await c.post(url, [{"labels": {"alertname": "x"}}])
    await c.aclose()
    assert seen == ["Bearer bearer-one", "Bearer bearer-two", "Basic " + base64.b64encode(b"driftd:s3cret").decode()]


def test_failed_push_never_quotes_the_token(tmp_path: Path) -> None:
    """A write-back to a token-bearing URL that fails: the error (which reaches logs, alerts and the
    audit trail) shows the URL without the token."""
    port = free_port()  # nothing listens there
    url = f"http://TOKEN-in-url-77@127.0.0.1:{port}/envs.git"
    with pytest.raises(SourceError) as ei:
        commit_and_push_sync(url, "main", cache_dir=tmp_path / "wb", paths=["apps"],
                             edit=lambda p, b: (b, ()), message=lambda lines: "m", author="d <d@x>")
    text = f"{ei.value} {ei.value.subject} {ei.value.__cause__ or ''}"
    assert "TOKEN-in-url-77" not in str(ei.value)
    assert "TOKEN-in-url-77" not in (ei.value.subject or "")
    assert f"127.0.0.1:{port}" in text


@pytest.fixture
def sb(sandbox: Sandbox) -> Sandbox:
    if not sandbox.git_ssh_url:
        pytest.skip(f"the sandbox in {sandbox.dir} predates git-ssh; recreate it")
    return sandbox


def _edit(path: str, data: bytes) -> tuple[bytes, list[str]]:
    return data + b"# edited\n", [f"{path}: edited"]


@pytest.mark.sandbox
def test_writeback_over_ssh_uses_known_hosts_and_never_prompts(sb: Sandbox, tmp_path: Path) -> None:
    name, work = repo_with_branches(sb, tmp_path, 0, prefix="wb-ssh", push_url=sb.git_ssh_repo_url,
                                    ssh_command=sb.git_ssh_command())
    good = RepositorySettings(name="r", url=sb.git_ssh_repo_url(name), ssh_key_file=Path(sb.git_ssh_key),
                              known_hosts_file=Path(sb.git_ssh_known_hosts), timeout=20)
    res = commit_and_push_sync(good.url, "main", cache_dir=tmp_path / "wb", paths=["apps"], edit=_edit,
                               message=lambda lines: "edit", author="driftd <d@x>", repository=good)
    assert res.revision
    git("fetch", "-q", "origin", cwd=work, ssh_command=sb.git_ssh_command())
    assert b"# edited" in git("show", "origin/main:apps/cm.yaml", cwd=work).stdout.encode()
    # a known_hosts file that does not list the server: refused at once, no prompt, no hang
    other = tmp_path / "known_hosts"
    other.write_text("")
    bad = RepositorySettings(name="r", url=good.url, ssh_key_file=good.ssh_key_file, known_hosts_file=other,
                             timeout=20)
    t0 = time.monotonic()
    with pytest.raises(SourceError) as ei:
        anyio.run(lambda: anyio.to_thread.run_sync(lambda: commit_and_push_sync(
            bad.url, "main", cache_dir=tmp_path / "wb2", paths=["apps"], edit=_edit, message=lambda lines: "edit",
            author="driftd <d@x>", repository=bad)))
    assert time.monotonic() - t0 < 15
    assert "host key" in str(ei.value).lower() or "verification" in str(ei.value).lower(), str(ei.value)
