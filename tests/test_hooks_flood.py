"""Issue 22 §12: an unauthenticated flood on ``POST /hooks/git`` must not starve real pushes. The
signature is verified before any budget is spent; rejected requests draw on a bucket of their own.
The daemon's real HTTP server (``serve``) on loopback, real requests."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anyio
import pytest

from driftd.hooks import GitHooks, HookRepository
from driftd.server import serve
from tests.alerting_support import FakeStatus, daemon
from tests.sandbox.procs import free_port

SECRET = "hook-secret-" + "c" * 20
URL = "https://git.example.com/platform/envs.git"
BURST = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Served:
    base: str
    pushed: list[str] = field(default_factory=list)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    secret = tmp_path / "hook-secret"
    secret.write_text(SECRET)
    port = free_port()
    out = Served(f"http://127.0.0.1:{port}")
    # A bucket that refills once every 1000 s: within the test, only the burst is there to spend.
    hooks = GitHooks(lambda: [HookRepository("envs", URL, secret)], out.pushed.append, rate=0.001, burst=BURST)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: serve(daemon(tmp_path, f"127.0.0.1:{port}"), FakeStatus(), hooks=hooks,
                                                 task_status=task_status))
        yield out
        tg.cancel_scope.cancel()


def _push(secret: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/main", "after": "1" * 40, "repository": {"clone_url": URL}}).encode()
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={sig}", "Content-Type": "application/json"}


@pytest.mark.anyio
async def test_a_flood_of_forged_pushes_never_starves_a_signed_one(served: Served) -> None:
    async with aiohttp.ClientSession() as s:
        forged = []
        for _ in range(4 * BURST):
            body, headers = _push("not-the-secret")
            async with s.post(served.base + "/hooks/git", data=body, headers=headers) as r:
                forged.append(r.status)
        # The failures' own bucket: its burst answered 401, then 429.
        assert forged == [401] * BURST + [429] * (3 * BURST)
        for _ in range(BURST):
            body, headers = _push(SECRET)
            async with s.post(served.base + "/hooks/git", data=body, headers=headers) as r:
                assert r.status == 202, await r.text()
        assert served.pushed == ["envs"] * BURST
        # Real pushes past their own budget are limited too.
        body, headers = _push(SECRET)
        async with s.post(served.base + "/hooks/git", data=body, headers=headers) as r:
            assert r.status == 429
        assert len(served.pushed) == BURST
