"""driftd.server over a real socket: probes, metrics, the JSON API, and the object URL alerts link to."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from driftd import metrics
from driftd.alerting.alerts import drift_alert
from driftd.errors import DriftdError
from driftd.model import Change, Status, TargetKind
from driftd.server import ServerLimits, is_loopback, serve
from tests.alerting_support import FakeStatus, daemon, drift, env, report
from tests.sandbox.procs import free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, FakeStatus]]:
    status = FakeStatus()
    port = free_port()
    async with anyio.create_task_group() as tg:
        await tg.start(serve, daemon(tmp_path, f"127.0.0.1:{port}"), status)
        yield f"http://127.0.0.1:{port}", status
        tg.cancel_scope.cancel()


async def _get(url: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, text, body


@pytest.mark.anyio
async def test_probes(served: tuple[str, FakeStatus]) -> None:
    base, status = served
    assert (await _get(base + "/healthz"))[0] == 200
    assert (await _get(base + "/readyz"))[0] == 503
    status.is_ready = True
    assert (await _get(base + "/readyz"))[0] == 200


@pytest.mark.anyio
async def test_metrics(served: tuple[str, FakeStatus]) -> None:
    base, _ = served
    metrics.environment_info.labels("srv-test", "alert", "drifted").set(1)
    code, text, _ = await _get(base + "/metrics")
    assert code == 200
    assert 'driftd_environment_info{environment="srv-test",mode="alert",status="drifted"} 1.0' in text
    assert "driftd_alert_outbox_size" in text
    metrics.environment_info.remove("srv-test", "alert", "drifted")


@pytest.mark.anyio
async def test_api_and_object_url(served: tuple[str, FakeStatus]) -> None:
    base, status = served
    e = env("prod")
    secret = drift("db-creds", kind="Secret", changes=(Change("/data/password", "b2xk", "c2VjcmV0LXZhbHVl"),))
    bucket = drift("logs", kind="AWS::S3::Bucket", namespace="", target=TargetKind.AWS,
                   changes=(Change("/VersioningConfiguration/Status", "Enabled", "Suspended"),))
    status.items = [report(e, drift(), secret, bucket), report(env("dev"))]
    code, text, body = await _get(base + "/api/v1/environments")
    assert code == 200
    assert [x["name"] for x in body["environments"]] == ["prod", "dev"]
    assert "c2VjcmV0LXZhbHVl" not in text  # a Secret value never leaves, even if a target forgot to redact
    assert body["environments"][0]["status"] == "drifted"
    code, _, one = await _get(base + "/api/v1/environments/prod")
    assert code == 200
    assert len(one["drifts"]) == 3
    assert (await _get(base + "/api/v1/environments/nope"))[0] == 404
    # generatorURL of an alert opens the object's drift
    for d in (drift(), bucket, secret):
        url = drift_alert(e, status.items[0], d, base).generator_url
        code, text, obj = await _get(url)
        assert code == 200, url
        assert obj["drift"]["name"] == d.key.name
        assert obj["drift"]["kind"] == d.key.kind
        assert "c2VjcmV0LXZhbHVl" not in text
    code, _, obj = await _get(base + "/api/v1/environments/prod/objects/kubernetes/Deployment/shop/other")
    assert code == 200
    assert obj["drift"] is None


@pytest.mark.anyio
async def test_error_report_shape(served: tuple[str, FakeStatus]) -> None:
    base, status = served
    e = env("broken")
    status.items = [report(e, status=Status.ERROR, error="git fetch failed")]
    _, _, body = await _get(base + "/api/v1/environments/broken")
    assert body["status"] == "error"
    assert body["error"] == "git fetch failed"


@pytest.mark.anyio
async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(DriftdError, match=rf"daemon.listen 127.0.0.1:{port}"):
            await serve(daemon(tmp_path, f"127.0.0.1:{port}"), FakeStatus())


# --- exposure: the bearer token, and connection limits (issue 14 §5) ------------------------------------

TOKEN = "t0k3n-" + "a" * 40


def _token_file(tmp_path: Path, token: str = TOKEN) -> Path:
    p = tmp_path / "api-token"
    p.write_text(token + "\n")
    p.chmod(0o600)
    return p


async def _get_auth(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        await r.read()
        return r.status


@pytest.mark.anyio
async def test_non_loopback_listener_without_token_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    for host in ("0.0.0.0", "10.1.2.3", "[::]", "driftd.example.com"):
        with pytest.raises(DriftdError, match=r"daemon.listen.*api_token_file"):
            await serve(replace(daemon(tmp_path), listen=f"{host}:{port}"), FakeStatus())
    # loopback stays open without a token (a local operator, the CLI)
    for host in ("127.0.0.1", "::1", "localhost"):
        assert is_loopback(host)
    for host in ("", "0.0.0.0", "::", "10.0.0.1"):
        assert not is_loopback(host)


@pytest.mark.anyio
async def test_short_or_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(DriftdError, match="at least 16 characters"):
        await serve(replace(daemon(tmp_path, f"0.0.0.0:{port}"), api_token_file=_token_file(tmp_path, "short")),
                    FakeStatus())
    with pytest.raises(DriftdError, match="cannot read the API token"):
        await serve(replace(daemon(tmp_path, f"0.0.0.0:{port}"), api_token_file=tmp_path / "nope"), FakeStatus())


@pytest.mark.anyio
async def test_token_required_on_api_and_any_other_page_but_probes_and_metrics(tmp_path: Path) -> None:
    status = FakeStatus()
    status.is_ready = True
    status.items = [report(env("prod"), drift())]
    port = free_port()
    tok = _token_file(tmp_path)
    async with anyio.create_task_group() as tg:
        # every interface: the case the token exists for
        await tg.start(serve, replace(daemon(tmp_path, f"0.0.0.0:{port}"), api_token_file=tok), status)
        base = f"http://127.0.0.1:{port}"
        for path in ("/api/v1/environments", "/api/v1/environments/prod", "/api/v1/environments/nope",
                     "/api/v1/environments/prod/objects/kubernetes/Deployment/shop/web",
                     "/", "/some/page/added/later", "/api/v2/x"):
            assert await _get_auth(base + path, None) == 401, path
            assert await _get_auth(base + path, "wrong-" + TOKEN) == 401, path
            assert await _get_auth(base + path, TOKEN[:-1]) == 401, path
        async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/environments",
                                                       headers={"Authorization": f"Basic {TOKEN}"}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "prod" not in await r.text()
        assert await _get_auth(base + "/api/v1/environments", TOKEN) == 200
        assert await _get_auth(base + "/api/v1/environments/prod", TOKEN) == 200
        for path in ("/metrics", "/healthz", "/readyz"):
            assert await _get_auth(base + path, None) == 200, path
        # rotation: the file is re-read when it changes, the old token stops working
        new = "n3w-" + "b" * 40
        tok.write_text(new + "\n")
        os.utime(tok, (time.time() + 5, time.time() + 5))
        assert await _get_auth(base + "/api/v1/environments", TOKEN) == 401
        assert await _get_auth(base + "/api/v1/environments", new) == 200
        # an unreadable token file admits nobody (fails closed), probes stay open
        tok.unlink()
        assert await _get_auth(base + "/api/v1/environments", new) == 401
        assert await _get_auth(base + "/healthz", None) == 200
        tg.cancel_scope.cancel()


def _half_open(port: int, n: int) -> list[socket.socket]:
    """n raw connections, each having sent half a request line and nothing more."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /api/v1/environments HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, wait: float) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.anyio
async def test_half_open_connections_are_closed_and_capped(tmp_path: Path) -> None:
    """Many clients that send a partial request and then nothing: each is closed after the header
    timeout, no more than max_connections are held at once, and a real client gets through after."""
    limits = ServerLimits(header_timeout=3.0, body_timeout=1.5, max_connections=100)
    status = FakeStatus()
    port = free_port()
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: serve(daemon(tmp_path, f"127.0.0.1:{port}"), status, limits=limits,
                                                 task_status=task_status))
        base = f"http://127.0.0.1:{port}"
        refused_before = _sample("driftd_http_connections_refused_total")
        peak = [0.0]

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], _sample("driftd_http_connections_open"))
                await anyio.sleep(0.01)

        tg.start_soon(watch)
        socks = await anyio.to_thread.run_sync(_half_open, port, 400)
        try:
            await anyio.sleep(0.5)
            # beyond the cap, connections were closed on accept (how many depends on how fast the
            # first ones time out on a loaded machine), and never more than the cap were open
            assert _sample("driftd_http_connections_refused_total") - refused_before >= 100
            assert 50 <= peak[0] <= limits.max_connections
            t0 = time.monotonic()
            closed = await anyio.to_thread.run_sync(lambda: sum(_closed_by_server(s, 6.0) for s in socks))
            assert closed == len(socks), f"{len(socks) - closed} half-open connections still held"
            assert time.monotonic() - t0 < 8.0
        finally:
            for s in socks:
                s.close()
        assert (await _get(base + "/healthz"))[0] == 200
        # a trickling client (a byte now and then, never finishing its headers) is closed as well
        s = socket.create_connection(("127.0.0.1", port))
        try:
            t0 = time.monotonic()
            held = True
            while held and time.monotonic() - t0 < 6:
                try:
                    s.sendall(b"X")
                except OSError:
                    held = False
                await anyio.sleep(0.2)
            assert not held, "a client trickling its headers held the connection"
        finally:
            s.close()
        # a body that never arrives: 408 or closed, well before a minute
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(b"POST /api/v1/environments HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
            data = await anyio.to_thread.run_sync(_read_all, s, 5.0)
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
        finally:
            s.close()
        # keep-alive between requests works for a normal client
        async with aiohttp.ClientSession() as c:
            for _ in range(3):
                async with c.get(base + "/healthz") as r:
                    assert r.status == 200
        tg.cancel_scope.cancel()


def _read_all(s: socket.socket, wait: float) -> bytes:
    s.settimeout(wait)
    out = b""
    try:
        while chunk := s.recv(4096):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def _sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


@pytest.mark.anyio
async def test_default_limits_close_half_open_connections(tmp_path: Path) -> None:
    """The shipped defaults, not a test-sized limit: 1,000 half-open connections are gone within
    header_timeout plus a margin (today they were held for over two minutes)."""
    assert ServerLimits().header_timeout <= 15
    status = FakeStatus()
    port = free_port()
    async with anyio.create_task_group() as tg:
        await tg.start(serve, daemon(tmp_path, f"127.0.0.1:{port}"), status)
        socks = await anyio.to_thread.run_sync(_half_open, port, 1000)
        try:
            await anyio.sleep(ServerLimits().header_timeout)
            closed = await anyio.to_thread.run_sync(lambda: sum(_closed_by_server(s, 5.0) for s in socks))
            assert closed == len(socks)
        finally:
            for s in socks:
                s.close()
        assert (await _get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        tg.cancel_scope.cancel()
