"""The pure renderers: markdown and HTML reports and the web page, from plain data (no server)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from driftd.model import (
    Action,
    Change,
    ChangeOp,
    Drift,
    DriftKind,
    EnvironmentReport,
    Mode,
    Pause,
    Report,
    ResourceKey,
    Status,
    TargetKind,
)
from driftd.render import TimelineRow, render_html, render_markdown
from driftd.render.document import drifts_since, group_report
from driftd.render.page import TimelineFilter, render_page

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DEP = ResourceKey(TargetKind.KUBERNETES, "Deployment", "web", "shop", "apps/v1")
CM = ResourceKey(TargetKind.KUBERNETES, "ConfigMap", "<script>alert(1)</script>", "shop", "v1")
SECRET = ResourceKey(TargetKind.KUBERNETES, "Secret", "db", "shop", "v1")
SG = ResourceKey(TargetKind.AWS, "AWS::EC2::SecurityGroup", "web-sg", "us-east-1")


def report() -> Report:
    prod = EnvironmentReport(
        "prod", "a" * 40, Status.DRIFTED, resources=12, mode=Mode.ENFORCE, checked_at=T0,
        drifts=(
            Drift(DEP, DriftKind.MODIFIED, (Change("/spec/replicas", 2, 5),), changed_by="kubectl-scale",
                  changed_at=T0, action=Action.REVERTED),
            Drift(SECRET, DriftKind.MODIFIED, (Change("/data/password", "aHVudGVyMg==", "c2VjcmV0"),),
                  changed_by="kubectl-edit", action=Action.SKIPPED, reason="drift_storm: 60% of objects"),
            Drift(CM, DriftKind.MODIFIED, (Change("/data/extra", actual={"api_token": "tok-123", "k": "v"},
                                                 op=ChangeOp.ADD),), action=Action.REVERT_FAILED,
                  reason="forbidden"),
        ))
    aws = EnvironmentReport("aws", "b" * 40, Status.DRIFTED, resources=3, mode=Mode.ALERT, checked_at=T0,
                            drifts=(Drift(SG, DriftKind.MODIFIED, (Change("/SecurityGroupIngress/0/CidrIp",
                                                                          "10.0.0.0/8", "0.0.0.0/0"),)),))
    dev = EnvironmentReport("dev", None, Status.ERROR, error="cannot fetch repository repo: timed out",
                            pauses=(Pause("dev", T0, "INC-42 <b>", "cli:alice"),))
    return Report((prod, aws, dev))


def test_grouping_by_environment_and_kind() -> None:
    groups = group_report(report())
    assert [g.env.name for g in groups] == ["prod", "aws", "dev"]
    assert [(k.target, k.kind) for k in groups[0].kinds] == [("kubernetes", "ConfigMap"), ("kubernetes", "Deployment"),
                                                             ("kubernetes", "Secret")]
    # The reverted drift no longer counts as remaining.
    assert groups[0].counts == {"modified": 2}


def test_markdown_has_tables_diffs_actions_and_masks_secrets() -> None:
    out = io.StringIO()
    render_markdown(report(), out)
    md = out.getvalue()
    assert "| prod | ⚠️ drifted | enforce | `aaaaaaaaaaaa` |" in md
    assert "| dev | ❌ error |" in md
    assert "cannot fetch repository" in md
    assert "> **paused** `*` until 2026-11-26 10:00:00Z by cli:alice: INC-42 <b>" in md
    assert "#### Deployment (kubernetes, 1)" in md
    assert "```diff\n  @@ /spec/replicas\n  - 2\n  + 5\n  ```" in md
    assert "by **kubectl-scale** since 2026-11-26 10:00:00Z; reverted" in md
    assert "held: drift_storm: 60% of objects" in md
    assert "revert failed: forbidden" in md
    assert "- 10.0.0.0/8" in md
    assert "+ 0.0.0.0/0" in md
    for secret in ("aHVudGVyMg==", "c2VjcmV0", "tok-123"):
        assert secret not in md
    assert "(redacted)" in md


def test_html_report_is_self_contained_escaped_and_masked() -> None:
    out = io.StringIO()
    rows = [TimelineRow(1, T0, "prod", "reverted", "Deployment/shop/web", "a" * 40, "modified", None, "kubectl-scale")]
    render_html(report(), out, events=rows)
    html = out.getvalue()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<link" not in html
    assert "http://" not in html
    assert "https://" not in html
    assert "<style>" in html
    assert 'class="badge drifted"' in html
    assert '<span class="exp">- 2</span>' in html
    assert 'class="paused">paused * until 2026-11-26 10:00:00Z by cli:alice: INC-42 &lt;b&gt;' in html
    assert '<span class="act">+ 5</span>' in html
    assert 'class="drift action-reverted"' in html
    assert 'class="drift action-held"' in html
    for secret in ("aHVudGVyMg==", "c2VjcmV0", "tok-123"):
        assert secret not in html
    assert 'class="ev ev-reverted"' in html


def test_since_keeps_recent_and_undated_drifts() -> None:
    later = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    r = drifts_since(report(), later)
    prod = r.environments[0]
    # The Deployment changed at T0 (before): dropped; the others have no time: kept.
    assert {d.key.kind for d in prod.drifts} == {"Secret", "ConfigMap"}
    first = {("prod", SECRET): T0}
    assert {d.key.kind for d in drifts_since(report(), later, first).environments[0].drifts} == {"ConfigMap"}


def test_page_filters_timeline_and_works_without_javascript() -> None:
    rows = [TimelineRow(i, T0, env, ev, obj) for i, (env, ev, obj) in enumerate(
        [("prod", "detected", "Deployment/shop/web"), ("prod", "reverted", "Deployment/shop/web"),
         ("aws", "detected", "AWS::EC2::SecurityGroup/us-east-1/web-sg"), ("prod", "image", "")], start=1)]
    findings = {"prod": [TimelineRow(9, T0, "prod", "image", "", reason="update_available: web reg/app 1.0 -> 1.2")]}
    page = render_page(report(), timeline=rows, findings=findings,
                       filt=TimelineFilter(env="prod", object="deployment/", event=""))
    timeline = page[page.index('id="timeline"'):]
    assert timeline.count('class="ev ev-') == 2  # prod's two Deployment events, not aws's, not the image one
    assert '<form class="filters" method="get"' in page  # filtering is a plain GET form
    assert '<noscript><meta http-equiv="refresh"' in page
    assert 'src="/static/app.js"' in page
    assert 'href="/static/style.css"' in page
    assert "update_available: web reg/app 1.0 -&gt; 1.2" in page
    assert 'id="env-prod"' in page
