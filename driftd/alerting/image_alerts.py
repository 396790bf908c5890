"""Alerts for image findings (``[[environments.images]]``): an ImageFindingListener.

A minimal implementation (by the daemon's owner) until AlertNotifier grows ``image_findings``: it
writes to the SAME durable outbox (``state_dir/alerts.db``) that AlertNotifier delivers from, so
delivery, retries, resends and HA fan-out stay AlertNotifier's; this module only decides which image
alerts are open. The daemon prefers AlertNotifier's own ``image_findings`` once it exists.

- ``update_available``, ``digest_missing``, ``write_back_failed`` are states: open while polls keep
  reporting them (re-sent every ``resend_interval``), resolved when a poll of that policy no longer
  does, and expiring by themselves if polls stop (the environment went into error, say).
- ``tag_moved`` is an event: notified once, then it resolves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from urllib.parse import quote

from ..config import AlertmanagerSettings, DaemonSettings, EnvironmentSettings
from ..log import get_logger
from ..model import Mode
from ..policy.images import FindingKind, ImageFinding
from .alerts import Alert
from .notifier import OUTBOX_FILE, default_base_url
from .outbox import Outbox

log = get_logger("driftd.alerting")

ALERT_NAMES: dict[FindingKind, str] = {
    FindingKind.UPDATE_AVAILABLE: "DriftdImageUpdateAvailable",
    FindingKind.TAG_MOVED: "DriftdImageTagMoved",
    FindingKind.DIGEST_MISSING: "DriftdImageDigestMissing",
    FindingKind.WRITE_BACK_FAILED: "DriftdImageWriteBackFailed",
}
_STATES = [n for k, n in ALERT_NAMES.items() if k is not FindingKind.TAG_MOVED]


def image_alert(env: EnvironmentSettings, f: ImageFinding, base_url: str) -> Alert:
    """Labels identify the alert (environment, policy, kind, and the tag for a moved tag); the
    versions go in annotations, so a newer ``latest`` updates the same alert instead of a new one."""
    labels = {"alertname": ALERT_NAMES[f.kind], "environment": env.name, "policy": f.policy,
              "severity": "critical" if f.kind is FindingKind.TAG_MOVED else env.severity, "mode": str(env.mode)}
    if f.image:
        labels["image"] = f.image
    if f.kind is FindingKind.TAG_MOVED and f.tag:
        labels["tag"] = f.tag
    summary = {
        FindingKind.UPDATE_AVAILABLE: f"{env.name} runs {f.image}:{f.current or '?'}, policy {f.policy} selects "
                                      f"{f.latest}",
        FindingKind.TAG_MOVED: f"tag {f.image}:{f.tag} was moved to another digest",
        FindingKind.DIGEST_MISSING: f"{f.current} no longer exists in the registry ({env.name})",
        FindingKind.WRITE_BACK_FAILED: f"driftd could not write {f.policy} {f.latest or ''} back to Git "
                                       f"for {env.name}",
    }[f.kind]
    annotations = {"summary": summary, "description": f.message or summary}
    for k in ("current", "latest", "old_digest", "new_digest"):
        v = getattr(f, k)
        if v:
            annotations[k] = str(v)
    url = base_url.rstrip("/") + "/api/v1/environments/" + quote(env.name, safe="")
    return Alert(labels, annotations, url)


class ImageAlerts:
    """Implements engine.protocols.ImageFindingListener on AlertNotifier's outbox."""

    def __init__(self, settings: AlertmanagerSettings, daemon: DaemonSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.base_url = settings.external_url or default_base_url(daemon)
        self._clock = clock
        self._outbox = Outbox(daemon.state_dir / OUTBOX_FILE, settings.urls) if settings.urls else None

    async def image_findings(self, env: EnvironmentSettings, findings: Sequence[ImageFinding]) -> None:
        if self._outbox is None:
            return
        try:
            self._findings(self._outbox, env, findings, self._clock())
        except Exception:  # a listener must not raise
            log.exception("alerting.failed", env=env.name, what="images")

    def _findings(self, ob: Outbox, env: EnvironmentSettings, findings: Sequence[ImageFinding], now: float) -> None:
        resend = self.settings.resend_interval
        mine = ob.open_alerts(env.name, [*_STATES, ALERT_NAMES[FindingKind.TAG_MOVED]])
        if env.mode is Mode.OBSERVE:
            ob.resolve([a.fingerprint for a in mine], now)
            return
        ttl = max(2 * resend, 3 * env.interval)
        live: set[str] = set()
        seen = {f.policy for f in findings} - {f.policy for f in findings if f.kind is FindingKind.ERROR}
        for f in findings:
            if not f.alerting or f.kind not in ALERT_NAMES:
                continue
            alert = image_alert(env, f, self.base_url)
            if f.kind is FindingKind.TAG_MOVED:
                ob.fire(alert, now, expires_at=now + resend)
            else:
                ob.fire(alert, now, expires_at=now + ttl, resend=resend)
                live.add(alert.fingerprint)
            log.info("alerting.image", env=env.name, policy=f.policy, kind=str(f.kind))
        gone = [a.fingerprint for a in mine if a.alert.name in _STATES and a.fingerprint not in live
                and a.alert.labels.get("policy") in seen]
        if gone:
            ob.resolve(gone, now)

    async def aclose(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
