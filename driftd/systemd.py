"""systemd's notify protocol (sd_notify(3)), in stdlib: datagrams on ``$NOTIFY_SOCKET``.

With ``Type=notify-reload`` (or ``notify``) and ``WatchdogSec=`` in the unit, the daemon says
``READY=1`` once every environment was checked, keeps a one-line ``STATUS=``, pings ``WATCHDOG=1``
at half of ``$WATCHDOG_USEC`` from the event loop itself (a blocked loop stops the pings and
systemd restarts it), and brackets reloads and shutdown with ``RELOADING=1``/``STOPPING=1``.
Without ``$NOTIFY_SOCKET`` every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import anyio
import anyio.abc

from .log import get_logger
from .model import EnvironmentReport, Status

log = get_logger("driftd.systemd")


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=value`` lines. Never raises: systemd may be gone at shutdown."""
        if self.address is None:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace
            addr = "\0" + addr[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), addr)
        except OSError as e:
            log.warning("systemd.notify_failed", error=str(e))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        # Type=notify-reload wants the monotonic time with RELOADING=1 (systemd 253+).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading configuration")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=shutting down")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: os._Environ[str] | dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, if the watchdog is on and meant for this process."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 / 2 if value > 0 else None


class _Status(Protocol):
    def reports(self) -> Sequence[EnvironmentReport]: ...

    def ready(self) -> bool: ...


def summary(reports: Sequence[EnvironmentReport]) -> str:
    """One line for STATUS=: ``3 environments: 2 in sync, 1 drifted (4 drifts), 0 in error``."""
    by = {s: sum(r.status is s for r in reports) for s in Status}
    drifts = sum(len(r.drifts) for r in reports)
    return (f"{len(reports)} environment{'s' if len(reports) != 1 else ''}: {by[Status.IN_SYNC]} in sync, "
            f"{by[Status.DRIFTED]} drifted ({drifts} drift{'s' if drifts != 1 else ''}), "
            f"{by[Status.ERROR]} in error")


async def supervise(status: _Status, notifier: Notifier | None = None, *,
                    healthy: Callable[[], bool] = lambda: True, interval: float = 1.0,
                    environ: dict[str, str] | None = None,
                    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run in the daemon's task group until cancelled: READY=1 once ``status.ready()``, STATUS=
    whenever the summary changes, WATCHDOG=1 every half ``WATCHDOG_USEC`` while ``healthy()``."""
    n = notifier or Notifier.from_env(environ)
    task_status.started()
    if not n.enabled:
        await anyio.sleep_forever()
    try:
        await _supervise(status, n, healthy, interval, environ)
    finally:
        if notifier is None:
            n.close()


async def _supervise(status: _Status, n: Notifier, healthy: Callable[[], bool], interval: float,
                     environ: dict[str, str] | None) -> None:
    wd = watchdog_interval(environ)
    step = min(interval, wd) if wd else interval
    ready_sent = False
    last_status = ""
    last_ping = 0.0
    while True:
        now = time.monotonic()
        if wd and now - last_ping >= wd * 0.9 and healthy():
            n.watchdog()
            last_ping = now
        text = summary(status.reports())
        if not ready_sent and status.ready():
            n.ready(text)
            ready_sent = True
            last_status = text
        elif text != last_status:
            n.status(text if ready_sent else f"starting: {text}")
            last_status = text
        await anyio.sleep(step)


def _one_line(s: str) -> str:
    return " ".join(s.split())[:200]
