"""sd_notify messages as systemd would receive them: a datagram socket at $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from driftd.systemd import Notifier, summary, supervise, watchdog_interval
from tests.alerting_support import FakeStatus, drift, env, report


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield path, s
    s.close()


def recv(s: socket.socket) -> list[str]:
    return s.recv(4096).decode().split("\n")


def test_messages(notify_socket: tuple[str, socket.socket]) -> None:
    path, s = notify_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.ready("2 environments: 2 in sync")
    assert recv(s) == ["READY=1", "STATUS=2 environments: 2 in sync"]
    n.status("multi\nline   status")
    assert recv(s) == ["STATUS=multi line status"]
    n.reloading()
    msg = recv(s)
    assert msg[0] == "RELOADING=1"
    assert msg[1].startswith("MONOTONIC_USEC=")
    assert int(msg[1].split("=")[1]) > 0
    n.stopping()
    assert recv(s)[0] == "STOPPING=1"
    n.watchdog()
    assert recv(s) == ["WATCHDOG=1"]
    n.close()


def test_abstract_namespace() -> None:
    name = f"driftd-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        n = Notifier(f"@{name}")
        n.ready()
        assert recv(s) == ["READY=1"]
        n.close()
    finally:
        s.close()


def test_without_socket_is_a_noop() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False


def test_unreachable_socket_does_not_raise(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert n.stopping() is False
    n.close()


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # meant for another pid
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


def test_summary() -> None:
    a, b = env("a"), env("b")
    assert summary([report(a), report(b, drift(), drift("api"))]) == \
        "2 environments: 1 in sync, 1 drifted (2 drifts), 0 in error"


@pytest.mark.anyio
async def test_supervise_ready_status_watchdog(notify_socket: tuple[str, socket.socket]) -> None:
    path, s = notify_socket
    s.setblocking(False)
    status = FakeStatus()
    e = env("prod")
    status.items = [report(e)]
    environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
    healthy = True
    got: list[list[str]] = []

    async def collect(seconds: float) -> None:
        with anyio.move_on_after(seconds):
            while True:
                await anyio.wait_readable(s)
                got.append(recv(s))

    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: supervise(status, environ=environ, interval=0.05, healthy=lambda: healthy,
                                                     task_status=task_status))
        await collect(0.5)
        assert ["WATCHDOG=1"] in got
        assert not any("READY=1" in m for m in got)  # not before every environment was checked
        status.is_ready = True
        await collect(0.3)
        assert ["READY=1", "STATUS=1 environment: 1 in sync, 0 drifted (0 drifts), 0 in error"] in got
        got.clear()
        status.items = [report(e, drift())]
        await collect(0.3)
        assert ["STATUS=1 environment: 0 in sync, 1 drifted (1 drift), 0 in error"] in got
        healthy = False
        await collect(0.3)
        got.clear()
        await collect(0.6)
        assert ["WATCHDOG=1"] not in got  # an unhealthy daemon stops petting the watchdog
        tg.cancel_scope.cancel()
