"""AlertNotifier against the sandbox's real Alertmanagers and webhook receiver."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from driftd import metrics
from driftd.alerting import AlertNotifier
from driftd.model import Action, Mode
from tests.alerting_support import daemon, drift, env, report, settings
from tests.sandbox import Sandbox, start_alertmanager, stop_alertmanager


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ours(sb: Sandbox, env_name: str, status: str, am: str | None = None) -> list[dict[str, Any]]:
    """Alerts of ``env_name`` with ``status`` in the webhook's notifications (optionally from one AM)."""
    out = []
    for body in sb.alerts():
        if am is not None and body.get("externalURL", "").rstrip("/") != am.rstrip("/"):
            continue
        out += [a for a in body.get("alerts", []) if a["labels"].get("environment") == env_name
                and a["status"] == status]
    return out


async def wait_until(pred: Callable[[], Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await anyio.sleep(0.2)


def am_alerts(am: str, env_name: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"filter": f'environment="{env_name}"'})
    with urllib.request.urlopen(f"{am}/api/v2/alerts?{q}", timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def am_groups(am: str, env_name: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"filter": f'environment="{env_name}"'})
    with urllib.request.urlopen(f"{am}/api/v2/alerts/groups?{q}", timeout=5) as r:
        return [g for g in json.loads(r.read()) if g["alerts"]]


@pytest.mark.anyio
async def test_firing_then_resolved(sandbox: Sandbox, tmp_path: Path) -> None:
    n = AlertNotifier(settings((sandbox.alertmanager,)), daemon(tmp_path))
    e = env()
    async with anyio.create_task_group() as tg:
        await tg.start(n.run)
        await n.environment_checked(e, report(e, drift()))
        (fired,) = await wait_until(lambda: ours(sandbox, e.name, "firing"))
        assert fired["labels"]["alertname"] == "DriftDetected"
        assert fired["labels"]["name"] == "web"
        assert fired["annotations"]["changed_by"] == "kubectl-edit"
        assert fired["generatorURL"].endswith(f"/api/v1/environments/{e.name}/objects/kubernetes/Deployment/shop/web")
        await n.environment_checked(e, report(e))
        (resolved,) = await wait_until(lambda: ours(sandbox, e.name, "resolved"))
        assert resolved["startsAt"] == fired["startsAt"]
        assert resolved["endsAt"] != "0001-01-01T00:00:00Z"
        tg.cancel_scope.cancel()
    await n.aclose()


@pytest.mark.anyio
async def test_reverted_in_enforce(sandbox: Sandbox, tmp_path: Path) -> None:
    n = AlertNotifier(settings((sandbox.alertmanager,)), daemon(tmp_path))
    e = env(mode=Mode.ENFORCE)
    async with anyio.create_task_group() as tg:
        await tg.start(n.run)
        await n.environment_checked(e, report(e, drift(action=Action.REVERTED)))
        (a,) = await wait_until(lambda: ours(sandbox, e.name, "firing"))
        assert a["labels"]["alertname"] == "DriftReverted"
        assert a["labels"]["severity"] == "info"
        tg.cancel_scope.cancel()
    await n.aclose()


@pytest.mark.anyio
async def test_ha_pair_both_receive(sandbox: Sandbox, tmp_path: Path) -> None:
    n = AlertNotifier(settings((sandbox.alertmanager, sandbox.alertmanager2)), daemon(tmp_path))
    e = env()
    async with anyio.create_task_group() as tg:
        await tg.start(n.run)
        await n.environment_checked(e, report(e, drift()))
        await wait_until(lambda: ours(sandbox, e.name, "firing", sandbox.alertmanager))
        await wait_until(lambda: ours(sandbox, e.name, "firing", sandbox.alertmanager2))
        assert len(am_alerts(sandbox.alertmanager, e.name)) == 1
        assert len(am_alerts(sandbox.alertmanager2, e.name)) == 1
        await n.environment_checked(e, report(e))  # resolved at both
        await wait_until(lambda: ours(sandbox, e.name, "resolved", sandbox.alertmanager))
        await wait_until(lambda: ours(sandbox, e.name, "resolved", sandbox.alertmanager2))
        tg.cancel_scope.cancel()
    await n.aclose()


@pytest.mark.anyio
async def test_alertmanager_down_during_drift(sandbox_faults: Sandbox, tmp_path: Path) -> None:
    """Alertmanager stopped when the drift happens, and driftd restarted meanwhile: once it is back,
    the alert arrives, as one alert (one group), with the startsAt of the drift."""
    sb = sandbox_faults
    e = env()
    sent_before = metrics.alerts_sent._value.get()  # type: ignore[attr-defined]
    stop_alertmanager(sb, 1)
    try:
        n = AlertNotifier(settings((sb.alertmanager,), resend=2.0), daemon(tmp_path))
        async with anyio.create_task_group() as tg:
            await tg.start(n.run)
            await n.environment_checked(e, report(e, drift()))
            await anyio.sleep(2.5)  # several failed attempts, and a resend, while it is down
            assert n.outbox_size() == 1
            assert metrics.alert_outbox_size._value.get() == 1  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()
        await n.aclose()  # driftd stops with the alert still queued
    finally:
        start_alertmanager(sb, 1)
    n2 = AlertNotifier(settings((sb.alertmanager,), resend=2.0), daemon(tmp_path))
    try:
        assert n2.outbox_size() == 1
        async with anyio.create_task_group() as tg:
            await tg.start(n2.run)
            await n2.environment_checked(e, report(e, drift()))  # the drift is still there after the restart
            (a,) = await wait_until(lambda: ours(sb, e.name, "firing", sb.alertmanager), timeout=45)
            await anyio.sleep(3)  # let resends happen: they must not become new alerts
            # A resend (every 2 s) may be on its way at any instant: what matters is that the queue drains.
            await wait_until(lambda: n2.outbox_size() == 0, timeout=10)
            assert len(am_alerts(sb.alertmanager, e.name)) == 1
            assert len(am_groups(sb.alertmanager, e.name)) == 1
            assert am_alerts(sb.alertmanager, e.name)[0]["startsAt"] == a["startsAt"]
            await n2.environment_checked(e, report(e))
            await wait_until(lambda: ours(sb, e.name, "resolved", sb.alertmanager))
            tg.cancel_scope.cancel()
        assert metrics.alerts_sent._value.get() > sent_before  # type: ignore[attr-defined]
    finally:
        await n2.aclose()
