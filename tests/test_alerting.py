"""Alerts built from reports, redaction, and the outbox's lifecycle, without servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driftd import metrics
from driftd.alerting import AlertmanagerError, AlertNotifier, Outbox
from driftd.alerting.alerts import MAX_DESCRIPTION, drift_alert, error_alert, object_url
from driftd.alerting.client import alerts_endpoint
from driftd.alerting.outbox import rfc3339
from driftd.model import REDACTED, Action, Change, ChangeOp, Mode, Severity, Status, TargetKind
from driftd.policy.images import FindingKind, ImageFinding
from tests.alerting_support import daemon, drift, env, key, report, settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClient:
    """Records posts; ``down`` makes it fail like an unreachable Alertmanager."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, list[dict[str, Any]]]] = []
        self.down: set[str] = set()
        self.reject = False

    async def post(self, url: str, alerts: list[dict[str, Any]]) -> None:
        if url in self.down:
            raise AlertmanagerError("connection refused", subject=url, retryable=True)
        if self.reject:
            raise AlertmanagerError("400 bad", subject=url, retryable=False)
        self.posts.append((url, [json.loads(json.dumps(a)) for a in alerts]))

    async def aclose(self) -> None:
        pass

    def sent(self, url: str | None = None) -> list[dict[str, Any]]:
        return [a for u, batch in self.posts if url in (None, u) for a in batch]


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def notifier(tmp_path: Path, urls: tuple[str, ...] = ("http://am1", "http://am2"), **kw: Any
             ) -> tuple[AlertNotifier, FakeClient, Clock]:
    c, clock = FakeClient(), Clock()
    n = AlertNotifier(settings(urls, **kw), daemon(tmp_path), clock=clock, client=c)  # type: ignore[arg-type]
    return n, c, clock


def test_drift_alert_labels_and_annotations() -> None:
    e = env("prod", severity=Severity.CRITICAL)
    a = drift_alert(e, report(e, drift()), drift(), "http://driftd:9717")
    assert dict(a.labels) == {"alertname": "DriftDetected", "environment": "prod", "target": "kubernetes",
                              "kind": "Deployment", "namespace": "shop", "name": "web", "drift": "modified",
                              "severity": "critical", "mode": "alert"}
    assert a.annotations["changed_by"] == "kubectl-edit"
    assert a.annotations["revision"] == "abc123"
    assert "/spec/replicas: 2 -> 5" in a.annotations["description"]
    assert "kubectl-edit" in a.annotations["summary"]
    assert a.generator_url == "http://driftd:9717/api/v1/environments/prod/objects/kubernetes/Deployment/shop/web"


def test_reverted_is_info_and_named_drift_reverted() -> None:
    e = env(mode=Mode.ENFORCE, severity=Severity.CRITICAL)
    a = drift_alert(e, report(e), drift(action=Action.REVERTED), "http://x")
    assert a.labels["alertname"] == "DriftReverted"
    assert a.labels["severity"] == "info"
    assert a.labels["mode"] == "enforce"


def test_object_url_escapes_aws_types_and_empty_namespace() -> None:
    k = key("my-bucket", "AWS::S3::Bucket", "", TargetKind.AWS)
    assert object_url("http://h:1/", "e", k) == \
        "http://h:1/api/v1/environments/e/objects/aws/AWS%3A%3AS3%3A%3ABucket/_/my-bucket"


@pytest.mark.parametrize(("kind", "path"), [("Secret", "/data/password"), ("AWS::SSM::Parameter", "/Value"),
                                            ("ConfigMap", "/data/db_password"),
                                            ("AWS::SecretsManager::Secret", "/SecretString")])
def test_secret_values_never_reach_an_alert(kind: str, path: str) -> None:
    e = env()
    d = drift("s", kind=kind, changes=(Change(path, "hunter2-old", "hunter2-new"),))
    a = drift_alert(e, report(e, d), d, "http://x")
    text = json.dumps([dict(a.labels), dict(a.annotations), a.generator_url])
    assert "hunter2" not in text
    assert path in a.annotations["description"]
    assert REDACTED in a.annotations["description"]


def test_nested_credential_fields_are_scrubbed() -> None:
    e = env()
    d = drift("c", kind="ConfigMap", changes=(Change("/data", {"user": "bob"}, {"user": "bob", "api_key": "zz9"}),))
    desc = drift_alert(e, report(e, d), d, "http://x").annotations["description"]
    assert "zz9" not in desc
    assert "bob" in desc


def test_description_is_bounded() -> None:
    e = env()
    changes = tuple(Change(f"/spec/x{i}", "a" * 300, "b" * 300) for i in range(100))
    d = drift(changes=changes)
    desc = drift_alert(e, report(e, d), d, "http://x").annotations["description"]
    assert len(desc) <= MAX_DESCRIPTION
    assert desc.endswith("more change(s)")


def test_added_and_removed_changes_described() -> None:
    e = env()
    d = drift(changes=(Change("/spec/env/0", None, {"name": "DEBUG"}, ChangeOp.ADD),
                       Change("/metadata/labels/team", "a", None, ChangeOp.REMOVE)))
    desc = drift_alert(e, report(e, d), d, "http://x").annotations["description"]
    assert '/spec/env/0: added {"name": "DEBUG"}' in desc
    assert "/metadata/labels/team: removed (Git: a)" in desc


def test_error_alert() -> None:
    e = env("stage")
    a = error_alert(e, report(e, status=Status.ERROR, error="git fetch failed: connection refused"), "http://x")
    assert a.labels["alertname"] == "DriftdEnvironmentError"
    assert "connection refused" in a.annotations["description"]


def test_endpoint() -> None:
    assert alerts_endpoint("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert alerts_endpoint("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


@pytest.mark.anyio
async def test_firing_then_resolved_to_every_url(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path)
    e = env()
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    fired = c.sent()
    assert {u for u, _ in c.posts} == {"http://am1", "http://am2"}
    assert len(fired) == 2
    assert all(a["labels"]["alertname"] == "DriftDetected" for a in fired)
    starts = fired[0]["startsAt"]
    assert fired[0]["endsAt"] > fired[0]["startsAt"]  # firing: endsAt in the future, a few resends ahead
    c.posts.clear()
    clock.t += 5
    await n.environment_checked(e, report(e))
    await n.deliver()
    resolved = c.sent("http://am1")
    assert len(resolved) == 1
    assert resolved[0]["startsAt"] == starts
    assert resolved[0]["endsAt"] < fired[0]["endsAt"]
    assert n.outbox_size() == 0
    await n.aclose()


@pytest.mark.anyio
async def test_unchanged_drift_is_not_resent_until_interval(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path, urls=("http://am1",), resend=60.0)
    e = env()
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    c.posts.clear()
    clock.t += 10
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    assert c.sent() == []
    clock.t += 60
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    again = c.sent()
    assert len(again) == 1
    await n.aclose()


@pytest.mark.anyio
async def test_observe_mode_sends_nothing(tmp_path: Path) -> None:
    n, c, _ = notifier(tmp_path)
    e = env(mode=Mode.OBSERVE)
    await n.environment_checked(e, report(e, drift()))
    await n.safety_brake(e, "drift_storm", "12 of 20 objects drifted")
    await n.deliver()
    assert c.posts == []
    # an alert-mode environment with an object annotated observe: nothing for that object
    e2 = env()
    await n.environment_checked(e2, report(e2, drift(mode=Mode.OBSERVE), drift("api")))
    await n.deliver()
    assert {a["labels"]["name"] for a in c.sent("http://am1")} == {"api"}
    await n.aclose()


@pytest.mark.anyio
async def test_reverted_fires_then_expires(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path, urls=("http://am1",), resend=30.0)
    e = env(mode=Mode.ENFORCE)
    await n.environment_checked(e, report(e, drift(action=Action.REVERTED), status=Status.IN_SYNC))
    await n.deliver()
    (a,) = c.sent()
    assert a["labels"]["alertname"] == "DriftReverted"
    assert a["labels"]["severity"] == "info"
    c.posts.clear()
    clock.t += 31
    n._outbox.expire(clock())  # type: ignore[union-attr]  # what run() does every tick
    await n.deliver()
    (r,) = c.sent()
    assert r["labels"] == a["labels"]
    assert r["endsAt"] <= a["endsAt"]
    await n.aclose()


@pytest.mark.anyio
async def test_error_needs_grace_and_does_not_resolve_drifts(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path, urls=("http://am1",), grace=120.0)
    e = env()
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    c.posts.clear()
    err = report(e, status=Status.ERROR, error="cannot reach the API server")
    await n.environment_checked(e, err)
    await n.deliver()
    assert c.sent() == []  # within grace, and the drift alert is not resolved by a failed check
    clock.t += 121
    await n.environment_checked(e, err)
    await n.deliver()
    (a,) = c.sent()
    assert a["labels"]["alertname"] == "DriftdEnvironmentError"
    c.posts.clear()
    clock.t += 1
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    by = {x["labels"]["alertname"]: x for x in c.sent()}
    assert by["DriftdEnvironmentError"]["endsAt"] == rfc3339(clock.t)  # resolved the moment the check passes
    assert by["DriftDetected"]["endsAt"] > rfc3339(clock.t)  # re-sent (interval passed), still firing
    await n.aclose()


@pytest.mark.anyio
async def test_brake_alert_labels(tmp_path: Path) -> None:
    n, c, _ = notifier(tmp_path, urls=("http://am1",))
    e = env(mode=Mode.ENFORCE)
    await n.safety_brake(e, "fight", "reverted 4 times in 10m", key=key("web"))
    await n.deliver()
    (a,) = c.sent()
    assert a["labels"]["alertname"] == "DriftdSafetyBrake"
    assert a["labels"]["brake"] == "fight"
    assert a["labels"]["name"] == "web"
    await n.aclose()


@pytest.mark.anyio
async def test_unreachable_url_keeps_alerts_queued_across_restart(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path)
    c.down.add("http://am2")
    e = env()
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    assert len(c.sent("http://am1")) == 1
    assert n.outbox_size() == 1
    assert metrics.alert_outbox_size._value.get() == 1  # type: ignore[attr-defined]
    starts = c.sent("http://am1")[0]["startsAt"]
    await n.aclose()  # the daemon stops with am2 still down

    n2 = AlertNotifier(settings(("http://am1", "http://am2")), daemon(tmp_path), clock=clock,
                       client=c)  # type: ignore[arg-type]
    assert n2.outbox_size() == 1
    await n2.deliver()  # still backing off
    assert c.sent("http://am2") == []
    c.down.clear()
    clock.t += 60
    await n2.deliver()
    (a,) = c.sent("http://am2")
    assert a["startsAt"] == starts  # the same alert, not a new one
    assert n2.outbox_size() == 0
    await n2.aclose()


@pytest.mark.anyio
async def test_rejected_alerts_are_dropped_not_retried_forever(tmp_path: Path) -> None:
    n, c, _ = notifier(tmp_path, urls=("http://am1",))
    c.reject = True
    e = env()
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    assert n.outbox_size() == 0
    await n.aclose()


def test_outbox_resolved_while_queued_goes_out_resolved(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "a.db", ["u"])
    e = env()
    a = drift_alert(e, report(e, drift()), drift(), "http://x")
    ob.fire(a, 100.0)
    ob.resolve([a.fingerprint], 105.0)
    (p,) = ob.pending("u", 200.0, firing_ttl=240.0)
    assert p.payload["endsAt"].startswith("1970-01-01T00:01:45")
    ob.delivered("u", [p])
    assert ob.size() == 0
    assert ob.open_alerts() == []
    ob.close()


def _finding(e_name: str, kind: FindingKind, policy: str = "web", **kw: Any) -> ImageFinding:
    return ImageFinding(e_name, policy, "reg.test/team/web", kind, **kw)


@pytest.mark.anyio
async def test_image_findings_open_update_resolve_and_moved_tag_events(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path, urls=("http://am1",), resend=60.0)
    e = env()
    await n.image_findings(e, [_finding(e.name, FindingKind.UPDATE_AVAILABLE, current="1.0.0", latest="1.2.0"),
                               _finding(e.name, FindingKind.TAG_MOVED, tag="1.0.0", old_digest="sha256:a",
                                        new_digest="sha256:b"),
                               _finding(e.name, FindingKind.WOULD_WRITE_BACK, latest="1.2.0")])  # not alerting
    await n.deliver()
    by_name = {a["labels"]["alertname"]: a for a in c.sent()}
    assert set(by_name) == {"DriftdImageUpdateAvailable", "DriftdImageTagMoved"}
    up = by_name["DriftdImageUpdateAvailable"]
    assert (up["labels"]["policy"], up["labels"]["image"], up["labels"]["environment"]) == \
        ("web", "reg.test/team/web", e.name)
    assert (up["annotations"]["current"], up["annotations"]["latest"]) == ("1.0.0", "1.2.0")
    assert by_name["DriftdImageTagMoved"]["labels"]["severity"] == "critical"
    assert by_name["DriftdImageTagMoved"]["labels"]["tag"] == "1.0.0"
    # A newer version is the same alert, updated; a failed poll of the policy resolves nothing.
    c.posts.clear()
    clock.t += 5
    await n.image_findings(e, [_finding(e.name, FindingKind.UPDATE_AVAILABLE, current="1.0.0", latest="1.3.0")])
    await n.image_findings(e, [_finding(e.name, FindingKind.ERROR, message="registry down")])
    await n.deliver()
    (again,) = c.sent()
    assert again["annotations"]["latest"] == "1.3.0"
    assert again["startsAt"] == up["startsAt"]
    # Up to date: the update alert resolves; the moved tag (an event) has expired by then.
    c.posts.clear()
    clock.t += 120
    await n.image_findings(e, [_finding(e.name, FindingKind.UP_TO_DATE, latest="1.3.0")])
    n._outbox.expire(clock.t)  # type: ignore[union-attr]
    await n.deliver()
    assert {a["labels"]["alertname"]: a["endsAt"] <= rfc3339(clock.t) for a in c.sent()} == \
        {"DriftdImageUpdateAvailable": True, "DriftdImageTagMoved": True}
    assert n._outbox.open_alerts(e.name) == []  # type: ignore[union-attr]
    # Observe mode alerts on nothing.
    c.posts.clear()
    o = env(mode=Mode.OBSERVE)
    await n.image_findings(o, [_finding(o.name, FindingKind.UPDATE_AVAILABLE, current="1", latest="2")])
    await n.deliver()
    assert c.sent() == []
    await n.aclose()


@pytest.mark.anyio
async def test_reconfigure_moves_open_and_queued_alerts_to_the_new_urls(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path, urls=("http://old",), resend=60.0)
    c.down.add("http://old")
    e = env()
    await n.environment_checked(e, report(e, drift()))
    await n.image_findings(e, [_finding(e.name, FindingKind.UPDATE_AVAILABLE, current="1", latest="2")])
    await n.deliver()  # old is down: both stay queued
    assert c.sent() == []
    assert n.outbox_size() == 2
    opened = {a.alert.name: a.starts_at for a in n._outbox.open_alerts(e.name)}  # type: ignore[union-attr]
    clock.t += 30
    await n.reconfigure(settings(("http://new1", "http://new2"), resend=10.0), daemon(tmp_path))
    await n.deliver()
    for url in ("http://new1", "http://new2"):
        got = {a["labels"]["alertname"]: a["startsAt"] for a in c.sent(url)}
        assert got == {k: rfc3339(v) for k, v in opened.items()}  # the same alerts, not new ones
    assert c.sent("http://old") == []
    assert n.outbox_size() == 0  # nothing left queued for the removed URL
    # The new resend_interval applies.
    c.posts.clear()
    clock.t += 11
    await n.environment_checked(e, report(e, drift()))
    await n.deliver()
    assert len(c.sent("http://new1")) == 1
    # And the outbox survives a restart with the new URLs.
    await n.aclose()
    n2 = AlertNotifier(settings(("http://new1", "http://new2")), daemon(tmp_path), clock=clock,
                       client=c)  # type: ignore[arg-type]
    assert {a.alert.name for a in n2._outbox.open_alerts(e.name)} == set(opened)  # type: ignore[union-attr]
    await n2.aclose()


def test_an_enforce_window_does_not_change_the_alerts_identity() -> None:
    # The object's effective mode flips with enforce windows and annotations; the alert must stay the same
    # alert (same labels, same fingerprint, so the same startsAt), carrying the object's mode as an annotation.
    e = env("prod", mode=Mode.ENFORCE)
    outside = drift_alert(e, report(e, drift(mode=Mode.ALERT)), drift(mode=Mode.ALERT), "http://x")
    inside = drift_alert(e, report(e, drift(mode=Mode.ENFORCE)), drift(mode=Mode.ENFORCE), "http://x")
    assert outside.fingerprint == inside.fingerprint
    assert outside.labels["mode"] == "enforce"
    assert (outside.annotations["object_mode"], inside.annotations["object_mode"]) == ("alert", "enforce")
