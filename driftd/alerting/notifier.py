"""AlertNotifier: the engine's ReportListener and ImageFindingListener, keeping Alertmanager's view
equal to driftd's.

The engine tells it about every finished check and every image poll; it works out which alerts are
open for that environment, writes the difference to the outbox, and a background task (``run``)
delivers the outbox to every configured Alertmanager, re-sends open alerts every ``resend_interval``
and resolves event alerts whose time is up. ``reconfigure`` applies a reloaded ``[alertmanager]``
table in place: the outbox (open alerts, their ``startsAt``, what is still queued) carries over.

Image alerts: ``DriftdImageUpdateAvailable``, ``DriftdImageDigestMissing`` and
``DriftdImageWriteBackFailed`` are states: open while polls keep reporting them (re-sent every
``resend_interval``), resolved when a poll of that policy no longer does, expiring by themselves if
polls stop (the environment went into error, say). ``DriftdImageTagMoved`` is an event: notified
once, then it resolves.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import anyio
import anyio.abc

from .. import metrics
from ..config import AlertmanagerSettings, DaemonSettings, EnvironmentSettings
from ..log import get_logger
from ..model import Action, EnvironmentReport, ResourceKey, Status
from ..policy.images import FindingKind, ImageFinding
from .alerts import (
    IMAGE_ALERTS,
    IMAGE_STATES,
    AlertName,
    alerting,
    brake_alert,
    drift_alert,
    error_alert,
    image_alert,
    pause_alert,
)
from .client import AlertmanagerAuth, AlertmanagerClient, AlertmanagerError
from .outbox import Outbox, Pending

log = get_logger("driftd.alerting")

OUTBOX_FILE = "alerts.db"
HANDOVER_ANNOTATION = "driftd.io/alerts"  # on an environment's Lease: its open alerts, for the next holder
TICK = 1.0


def _auth(settings: AlertmanagerSettings) -> AlertmanagerAuth:
    return AlertmanagerAuth(settings.username, settings.password_file, settings.bearer_token_file)


def default_base_url(daemon: DaemonSettings) -> str:
    host = daemon.listen_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard is not an address anyone can follow
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{daemon.listen_port}"


class AlertNotifier:
    """Implements engine.protocols.ReportListener and ImageFindingListener. Start ``run()`` in the
    daemon's task group; call ``reconfigure`` when the config is reloaded."""

    def __init__(self, settings: AlertmanagerSettings, daemon: DaemonSettings, *,
                 clock: Callable[[], float] = time.time, client: AlertmanagerClient | None = None,
                 outbox_path: Path | None = None) -> None:
        self.settings = settings
        self.base_url = settings.external_url or default_base_url(daemon)
        self._clock = clock
        self._client = client or AlertmanagerClient(settings.timeout, _auth(settings))
        self._own_client = client is None
        self._outbox_path = outbox_path or daemon.state_dir / OUTBOX_FILE
        self._outbox: Outbox | None = None
        if settings.urls:
            self._outbox = Outbox(self._outbox_path, settings.urls)
        self._error_since: dict[str, tuple[float, EnvironmentSettings, EnvironmentReport]] = {}
        self._wake: anyio.Event | None = None
        self._update_size()

    @property
    def enabled(self) -> bool:
        return self._outbox is not None

    # --- ReportListener ------------------------------------------------------------------

    async def environment_checked(self, env: EnvironmentSettings, report: EnvironmentReport) -> None:
        if self._outbox is None:
            return
        try:
            self._checked(self._outbox, env, report, self._clock())
        except Exception:  # a listener must not raise: alerting trouble never stops a check
            log.exception("alerting.failed", env=env.name)
        self._poke()

    async def safety_brake(self, env: EnvironmentSettings, brake: str, detail: str, *,
                           key: ResourceKey | None = None) -> None:
        if self._outbox is None or not alerting(env):
            return
        try:
            now = self._clock()
            # A brake is reported while it holds; it resolves once no longer reported for a while.
            ttl = max(2 * self.settings.resend_interval, 2 * env.interval)
            self._outbox.fire(brake_alert(env, brake, detail, key, self.base_url), now, expires_at=now + ttl,
                              resend=self.settings.resend_interval)
        except Exception:
            log.exception("alerting.failed", env=env.name, brake=brake)
        self._poke()

    def _checked(self, ob: Outbox, env: EnvironmentSettings, report: EnvironmentReport, now: float) -> None:
        resend = self.settings.resend_interval
        if not alerting(env):
            # observe mode (perhaps since a reload): nothing of this environment stays open
            ob.resolve([a.fingerprint for a in ob.open_alerts(env.name)], now)
            self._error_since.pop(env.name, None)
            return
        if report.status is Status.ERROR:
            since = self._error_since.get(env.name, (now, env, report))[0]
            self._error_since[env.name] = (since, env, report)
            self._error_grace(ob, now)
        else:
            self._error_since.pop(env.name, None)
            ob.resolve([a.fingerprint for a in ob.open_alerts(env.name, [AlertName.ENVIRONMENT_ERROR])], now)
        paused: set[str] = set()
        for p in report.pauses:
            alert = pause_alert(env, p, self.base_url)
            # Resolves by itself when the pause expires; a resume drops it from the report first.
            ob.fire(alert, now, expires_at=p.until.timestamp(), resend=resend)
            paused.add(alert.fingerprint)
        ob.resolve([a.fingerprint for a in ob.open_alerts(env.name, [AlertName.PAUSED])
                    if a.fingerprint not in paused], now)
        live: set[str] = set()
        for d in report.drifts:
            if not alerting(env, d):
                continue
            alert = drift_alert(env, report, d, self.base_url)
            if d.action is Action.REVERTED:
                # An event, not a state: notify once, then let it resolve.
                ob.fire(alert, now, expires_at=now + resend)
            else:
                ob.fire(alert, now, resend=resend)
                live.add(alert.fingerprint)
        if report.status is Status.ERROR:
            # Not checked this time: what we cannot see is not resolved.
            return
        gone = [a.fingerprint for a in ob.open_alerts(env.name, [AlertName.DRIFT_DETECTED])
                if a.fingerprint not in live]
        if gone:
            ob.resolve(gone, now)
            log.info("alerting.resolved", env=env.name, alerts=len(gone))

    # --- ImageFindingListener -----------------------------------------------------------

    async def image_findings(self, env: EnvironmentSettings, findings: Sequence[ImageFinding]) -> None:
        if self._outbox is None:
            return
        try:
            self._images(self._outbox, env, findings, self._clock())
        except Exception:  # a listener must not raise
            log.exception("alerting.failed", env=env.name, what="images")
        self._poke()

    def _images(self, ob: Outbox, env: EnvironmentSettings, findings: Sequence[ImageFinding], now: float) -> None:
        resend = self.settings.resend_interval
        mine = ob.open_alerts(env.name, [str(n) for n in IMAGE_ALERTS.values()])
        if not alerting(env):
            ob.resolve([a.fingerprint for a in mine], now)
            return
        ttl = max(2 * resend, 3 * env.interval)
        live: set[str] = set()
        # Policies read this time: what a failed poll could not see is not resolved.
        seen = {f.policy for f in findings} - {f.policy for f in findings if f.kind is FindingKind.ERROR}
        for f in findings:
            if not f.alerting or f.kind not in IMAGE_ALERTS:
                continue
            alert = image_alert(env, f, self.base_url)
            if f.kind is FindingKind.TAG_MOVED:
                ob.fire(alert, now, expires_at=now + resend)
            else:
                ob.fire(alert, now, expires_at=now + ttl, resend=resend)
                live.add(alert.fingerprint)
            log.info("alerting.image", env=env.name, policy=f.policy, kind=str(f.kind))
        gone = [a.fingerprint for a in mine if a.alert.name in IMAGE_STATES and a.fingerprint not in live
                and a.alert.labels.get("policy") in seen]
        if gone:
            ob.resolve(gone, now)

    # --- handover between replicas ([coordination]) ---------------------------------------

    def handover_state(self, env: str) -> dict[str, str]:
        """Published on the environment's Lease: its open alerts and their ``startsAt``."""
        if self._outbox is None:
            return {}
        items = self._outbox.handover(env)
        return {HANDOVER_ANNOTATION: json.dumps(items, separators=(",", ":"), sort_keys=True)} if items else {}

    def adopt(self, env: str, state: Mapping[str, str]) -> None:
        """This replica took ``env`` over: continue the previous holder's alerts with their ``startsAt``."""
        raw = state.get(HANDOVER_ANNOTATION)
        if self._outbox is None or not raw:
            return
        try:
            items = json.loads(raw)
            n = self._outbox.adopt(env, items if isinstance(items, list) else [], self._clock())
        except (ValueError, sqlite3.Error):
            log.exception("alerting.adopt_failed", env=env)
            return
        log.info("alerting.adopted", env=env, alerts=n)

    def hand_off(self, env: str) -> None:
        """This replica gave ``env`` up: its alerts are the new holder's to continue or resolve."""
        self._error_since.pop(env, None)
        if self._outbox is not None:
            try:
                self._outbox.forget(env)
            except sqlite3.Error:
                log.exception("alerting.hand_off_failed", env=env)
        self._update_size()

    # --- reload ----------------------------------------------------------------------------

    async def reconfigure(self, settings: AlertmanagerSettings, daemon: DaemonSettings) -> None:
        """Apply a reloaded ``[alertmanager]``: new URLs get every open alert, removed ones are
        forgotten, new intervals and timeouts apply from the next round. The outbox is kept."""
        old = self.settings
        self.settings = settings
        self.base_url = settings.external_url or default_base_url(daemon)
        if (settings.timeout != old.timeout or _auth(settings) != _auth(old)) and self._own_client:
            client, self._client = self._client, AlertmanagerClient(settings.timeout, _auth(settings))
            await client.aclose()
        if self._outbox is None and settings.urls:
            self._outbox = Outbox(self._outbox_path, settings.urls)
        elif self._outbox is not None and tuple(settings.urls) != self._outbox.urls:
            added, removed = self._outbox.set_urls(settings.urls, self._clock())
            log.info("alerting.reconfigured", added=list(added), removed=list(removed),
                     open_alerts=len(self._outbox.open_alerts()))
        self._poke()

    def _error_grace(self, ob: Outbox, now: float) -> None:
        for since, env, report in list(self._error_since.values()):
            if now - since >= self.settings.error_grace:
                ob.fire(error_alert(env, report, self.base_url), now, resend=self.settings.resend_interval)

    # --- delivery ------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Deliver, re-send and expire until cancelled."""
        self._wake = anyio.Event()
        task_status.started()
        while True:
            ob = self._outbox
            if ob is None:  # no Alertmanager configured (yet): a reconfigure pokes us
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            try:
                now = self._clock()
                ob.expire(now)
                ob.resend_due(now, self.settings.resend_interval)
                self._error_grace(ob, now)
                await self.deliver()
            except Exception:
                log.exception("alerting.loop_failed")
            nxt = ob.next_due()
            wait = TICK if nxt is None else min(TICK, max(0.0, nxt - self._clock()))
            with anyio.move_on_after(wait):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def deliver(self) -> None:
        """One round: every due delivery to every Alertmanager, concurrently per URL."""
        if self._outbox is None:
            return
        async with anyio.create_task_group() as tg:
            for url in self.settings.urls:
                tg.start_soon(self._deliver_url, url)
        self._update_size()

    async def _deliver_url(self, url: str) -> None:
        ob = self._outbox
        assert ob is not None
        while True:
            batch = ob.pending(url, self._clock(), firing_ttl=4 * self.settings.resend_interval)
            if not batch:
                return
            try:
                await self._client.post(url, [p.payload for p in batch])
            except AlertmanagerError as e:
                if not e.retryable:
                    log.error("alerting.rejected", url=url, alerts=len(batch), error=e.message)
                    ob.drop(url, batch)
                    continue
                delay = ob.failed(url, batch, self._clock())
                log.warning("alerting.unreachable", url=url, queued=len(batch), retry_in=round(delay, 1),
                            error=e.message)
                return
            ob.delivered(url, batch)
            metrics.alerts_sent.inc(len(batch))
            log.debug("alerting.delivered", url=url, alerts=len(batch), names=_names(batch))

    def _poke(self) -> None:
        self._update_size()
        if self._wake is not None:
            self._wake.set()

    def _update_size(self) -> None:
        metrics.alert_outbox_size.set(self._outbox.size() if self._outbox is not None else 0)

    def outbox_size(self) -> int:
        return self._outbox.size() if self._outbox is not None else 0

    async def aclose(self) -> None:
        """Last delivery attempt (bounded), then close. What is left stays queued for the next start."""
        if self._outbox is not None:
            with anyio.move_on_after(min(2.0, self.settings.timeout)):
                await self.deliver()
            self._outbox.close()
            self._outbox = None
        await self._client.aclose()


def _names(batch: list[Pending]) -> str:
    return ",".join(sorted({str(p.payload["labels"].get("alertname")) for p in batch}))
