"""driftd.server over a real socket: probes, metrics, the JSON API, and the object URL alerts link to."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from driftd import metrics
from driftd.alerting.alerts import drift_alert
from driftd.errors import DriftdError
from driftd.model import Change, Status, TargetKind
from driftd.server import serve
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
