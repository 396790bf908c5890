"""The OCI registry client against the sandbox's real docker-registry 2.8 (anonymous and htpasswd),
with a fault-injecting proxy in front for 429s, bearer-token auth and v3-style pagination."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from registry_support import DOCKER_MANIFEST, FaultProxy, delete_manifest, push_image

from driftd.config import RegistrySettings
from driftd.errors import SourceError
from driftd.metrics import REGISTRY as METRICS
from driftd.sources.registry import (
    MANIFEST_ACCEPT,
    Registries,
    RegistryClient,
    load_credentials,
    parse_challenge,
    retry_after_seconds,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _repo(prefix: str) -> str:
    return f"t/{prefix}-{uuid.uuid4().hex[:8]}"


def _metric(operation: str, code: str) -> float:
    v = METRICS.get_sample_value("driftd_api_requests_total",
                                 {"target": "registry", "operation": operation, "code": code})
    return v or 0.0


# -- pure parts ----------------------------------------------------------------------------------


def test_challenge_parsing() -> None:
    scheme, p = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:library/nginx:pull"')
    assert scheme == "bearer"
    assert p == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                 "scope": "repository:library/nginx:pull"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3", 1.0) == 3.0
    assert retry_after_seconds(None, 1.5) == 1.5
    assert retry_after_seconds("garbage", 2.0) == 2.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds(future, 0.0) <= 31


def test_accept_lists_all_manifest_types() -> None:
    for mt in ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"):
        assert mt in MANIFEST_ACCEPT


@pytest.mark.anyio
async def test_docker_hub_host_mapping() -> None:
    async with Registries() as regs:
        assert regs.client("docker.io").base == "https://registry-1.docker.io"
        assert regs.client("ghcr.io").base == "https://ghcr.io"
        assert regs.client("localhost:5000").base == "http://localhost:5000"


def test_credentials_from_docker_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpass").decode()},
        "reg.example:5000": {"auth": base64.b64encode(b"me:p:with:colons").decode()},
    }}))
    hub = load_credentials(RegistrySettings(host="docker.io", docker_config=cfg))
    assert hub is not None
    assert (hub.username, hub.password) == ("hubuser", "hubpass")
    reg = load_credentials(RegistrySettings(host="reg.example:5000", docker_config=cfg))
    assert reg is not None
    assert (reg.username, reg.password) == ("me", "p:with:colons")
    assert load_credentials(RegistrySettings(host="other.example", docker_config=cfg)) is None
    assert "p:with:colons" not in repr(reg)


# -- against the real registry -------------------------------------------------------------------


@pytest.mark.anyio
async def test_digest_head_matches_pushed_manifest(sandbox) -> None:
    repo = _repo("digest")
    d_oci = push_image(sandbox.registry, repo, "1.0.0")
    d_docker = push_image(sandbox.registry, repo, "1.1.0", media_type=DOCKER_MANIFEST)
    async with Registries() as regs:
        c = regs.client(sandbox.registry)
        assert await c.get_digest(repo, "1.0.0") == d_oci
        assert await c.get_digest(repo, "1.1.0") == d_docker
        assert await c.get_digest(repo, d_oci) == d_oci  # by digest: it exists
        assert await c.get_digest(repo, "9.9.9") is None
        assert sorted(await c.list_tags(repo)) == ["1.0.0", "1.1.0"]
        with pytest.raises(SourceError) as e:
            await c.list_tags(_repo("absent"))
        assert not e.value.retryable


@pytest.mark.anyio
async def test_deleted_digest_is_reported_missing(sandbox) -> None:
    repo = _repo("gone")
    d = push_image(sandbox.registry, repo, "1.0.0")
    async with Registries() as regs:
        c = regs.client(sandbox.registry)
        assert await c.get_digest(repo, d) == d
        delete_manifest(sandbox.registry, repo, d)
        assert await c.get_digest(repo, d) is None


@pytest.mark.anyio
async def test_moved_tag_changes_digest(sandbox) -> None:
    repo = _repo("moved")
    first = push_image(sandbox.registry, repo, "stable", content="build 1")
    async with Registries() as regs:
        c = regs.client(sandbox.registry)
        assert await c.get_digest(repo, "stable") == first
        second = push_image(sandbox.registry, repo, "stable", content="build 2")
        assert second != first
        assert await c.get_digest(repo, "stable") == second


@pytest.mark.anyio
async def test_pagination_over_more_tags_than_a_page(sandbox) -> None:
    repo = _repo("pages")
    want = {f"1.{i}.0" for i in range(25)}
    for t in want:
        push_image(sandbox.registry, repo, t, content="same layer")
    # distribution 2.8 ignores n for tags: one answer with everything, and the client does not loop.
    async with Registries(page_size=10) as regs:
        c = regs.client(sandbox.registry)
        assert set(await c.list_tags(repo)) == want
        assert c.requests == 1
    # A paginating registry (v3 / Harbor behaviour) in front: the client follows Link headers.
    proxy = await FaultProxy(sandbox.registry, page_size=10).start()
    try:
        async with Registries(page_size=10) as regs:
            c = regs.client(proxy.host)
            tags = await c.list_tags(repo)
            assert sorted(tags) == sorted(want)
            assert len(tags) == 25
            assert c.requests == 3
        lex = sorted(want)
        assert [q for _, q, _ in proxy.requests] == [
            f"/v2/{repo}/tags/list?n=10", f"/v2/{repo}/tags/list?n=10&last={lex[9]}",
            f"/v2/{repo}/tags/list?n=10&last={lex[19]}"]
        # The same without Link headers: a full page makes the client ask for the rest with `last`.
        proxy.link = False
        async with Registries(page_size=10) as regs:
            c = regs.client(proxy.host)
            assert sorted(await c.list_tags(repo)) == sorted(want)
            assert c.requests == 3
    finally:
        await proxy.stop()


@pytest.mark.anyio
async def test_basic_auth_with_password_file_and_docker_config(sandbox, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo = _repo("auth")
    auth = (sandbox.registry_user, sandbox.registry_password)
    d = push_image(sandbox.registry_auth, repo, "2.0.0", auth=auth)
    pw = tmp_path / "pw"
    pw.write_text(sandbox.registry_password + "\n")
    dc = tmp_path / "config.json"
    dc.write_text(json.dumps({"auths": {sandbox.registry_auth: {"auth": base64.b64encode(
        f"{auth[0]}:{auth[1]}".encode()).decode()}}}))
    for s in (RegistrySettings(host=sandbox.registry_auth, username=auth[0], password_file=pw, insecure=True),
              RegistrySettings(host=sandbox.registry_auth, docker_config=dc, insecure=True)):
        async with Registries({s.host: s}) as regs:
            c = regs.client(s.host)
            assert await c.list_tags(repo) == ["2.0.0"]
            assert await c.get_digest(repo, "2.0.0") == d
            assert c.requests == 3  # one challenge, then basic auth sent up front
    # No credentials, or a wrong password: a clear, non-retryable error.
    async with Registries() as regs:
        with pytest.raises(SourceError, match="requires credentials") as e:
            await regs.client(sandbox.registry_auth).list_tags(repo)
        assert not e.value.retryable
    pw.write_text("wrong")
    s = RegistrySettings(host=sandbox.registry_auth, username=auth[0], password_file=pw)
    async with Registries({s.host: s}) as regs:
        with pytest.raises(SourceError, match="access denied"):
            await regs.client(s.host).list_tags(repo)
    assert sandbox.registry_password not in caplog.text


@pytest.mark.anyio
async def test_bearer_token_flow_and_cache(sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo = _repo("bearer")
    d = push_image(sandbox.registry, repo, "3.0.0")
    proxy = await FaultProxy(sandbox.registry, bearer=True, token_user=("robot", "s3cret")).start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            from driftd.sources.registry import Credentials

            c = RegistryClient(proxy.host, session, credentials=Credentials("robot", "s3cret"))
            assert await c.list_tags(repo) == ["3.0.0"]
            for _ in range(3):
                assert await c.get_digest(repo, "3.0.0") == d
            # One challenge, one token fetch (with the configured basic credentials), then cached.
            assert len(proxy.token_requests) == 1
            assert proxy.token_requests[0] == {"scope": f"repository:{repo}:pull", "service": "fault-proxy"}
            assert c.requests == 6
            bad = RegistryClient(proxy.host, session, credentials=Credentials("robot", "wrong"))
            with pytest.raises(SourceError, match="token service answered HTTP 401"):
                await bad.list_tags(repo)
    finally:
        await proxy.stop()
    assert "s3cret" not in caplog.text


@pytest.mark.anyio
async def test_429_with_retry_after_is_retried(sandbox) -> None:
    repo = _repo("throttle")
    d = push_image(sandbox.registry, repo, "1.0.0")
    proxy = await FaultProxy(sandbox.registry, throttle_next=3, retry_after="0.3").start()
    before = _metric("manifest_head", "429")
    try:
        async with Registries(backoff=0.05) as regs:
            c = regs.client(proxy.host)
            t0 = time.monotonic()
            assert await c.get_digest(repo, "1.0.0") == d
            elapsed = time.monotonic() - t0
            assert c.throttled == 3
            assert c.requests == 4
            assert elapsed >= 0.9  # honoured Retry-After three times
            assert _metric("manifest_head", "429") - before == 3
        # Throttled beyond the retry budget: a retryable SourceError, never a wrong answer.
        proxy.throttle_next, proxy.retry_after = 100, "0"
        async with Registries(backoff=0.01, max_retries=2) as regs:
            with pytest.raises(SourceError) as e:
                await regs.client(proxy.host).list_tags(repo)
            assert e.value.retryable
    finally:
        await proxy.stop()


@pytest.mark.anyio
async def test_concurrency_limit_per_registry(sandbox) -> None:
    import anyio

    repo = _repo("limit")
    push_image(sandbox.registry, repo, "1.0.0")
    proxy = await FaultProxy(sandbox.registry, delay=0.1).start()
    try:
        s = RegistrySettings(host=proxy.host, concurrency=2)
        async with Registries({s.host: s}) as regs:
            c = regs.client(s.host)
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(c.get_digest, repo, "1.0.0")
            assert c.requests == 8
        assert proxy.max_inflight == 2
    finally:
        await proxy.stop()
