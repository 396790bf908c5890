# ruff: noqa: ASYNC240  - tiny config files read and written in a test: blocking is harmless
"""The shipped Prometheus rules, PrometheusRule, Alertmanager route and Grafana dashboard; and the
rules firing for real: the sandbox's Prometheus scrapes driftd's /metrics and alerts Alertmanager."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from driftd import metrics
from driftd.server import serve
from tests.alerting_support import daemon
from tests.sandbox import Sandbox, reload_prometheus
from tests.sandbox.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "config" / "prometheus"
RULES = PROM / "driftd-rules.yml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


def test_promtool_check_rules() -> None:
    out = _run("promtool", "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


def test_promtool_rule_unit_tests() -> None:
    out = _run("promtool", "test", "rules", "driftd-rules.test.yml", cwd=PROM)
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheusrule_matches_plain_rules(tmp_path: Path) -> None:
    manifest = yaml.safe_load((PROM / "driftd-prometheusrule.yml").read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == yaml.safe_load(RULES.read_text())
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(manifest["spec"]))
    assert _run("promtool", "check", "rules", str(spec)).returncode == 0


def test_alertmanager_route_is_valid() -> None:
    out = _run("amtool", "check-config", str(PROM / "alertmanager-route.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def _metric_names() -> set[str]:
    names = set()
    for m in metrics.REGISTRY.collect():
        for s in m.samples:
            names.add(s.name)
        names.add(m.name)
    # histograms and counters expose suffixed series even before any observation
    for n in list(names):
        names |= {n + sfx for sfx in ("_bucket", "_count", "_sum", "_total", "_created")}
    return names


_IDENT = re.compile(r"\b(driftd_[a-z_]+)\b")


def test_rules_and_dashboard_use_existing_metrics() -> None:
    known = _metric_names()
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    dash = json.loads((ROOT / "config" / "grafana" / "driftd.json").read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in _IDENT.findall(e)}
    assert used, "no driftd metric referenced"
    assert used <= known, f"unknown metrics: {sorted(used - known)}"


def test_issue_metrics_exist() -> None:
    known = _metric_names()
    for name in ("driftd_environment_info", "driftd_drifted_resources", "driftd_managed_resources",
                 "driftd_reverts_total", "driftd_detection_latency_seconds_bucket",
                 "driftd_reconcile_duration_seconds_bucket", "driftd_source_last_success_timestamp_seconds",
                 "driftd_source_revision_info", "driftd_api_requests_total", "driftd_alerts_sent_total",
                 "driftd_alert_outbox_size"):
        assert name in known, name


def test_dashboard_layout() -> None:
    dash = json.loads((ROOT / "config" / "grafana" / "driftd.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        assert p["datasource"]["uid"] == "${datasource}"


# --- for real ------------------------------------------------------------------------------


def _prom_query(sb: Sandbox, q: str) -> list[dict[str, Any]]:
    url = f"{sb.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]  # type: ignore[no-any-return]


class _Status:
    def reports(self) -> list[Any]:
        return []

    def ready(self) -> bool:
        return True


@pytest.mark.slow
@pytest.mark.anyio
async def test_prometheus_scrapes_driftd_and_rules_fire(sandbox: Sandbox, tmp_path: Path) -> None:
    env = f"prom-{uuid.uuid4().hex[:8]}"
    job = f"driftd-test-{env}"
    port = free_port()
    # The shipped rules, with short `for:` so the test does not wait 15 minutes.
    rules = tmp_path / "driftd-rules.yml"
    rules.write_text(re.sub(r"for: \d+m", "for: 2s", RULES.read_text()))
    cfg_path = Path(sandbox.prometheus_config)
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["rule_files"] = [*(cfg.get("rule_files") or []), str(rules)]
    cfg["scrape_configs"].append({"job_name": job, "scrape_interval": "1s",
                                  "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]})
    metrics.drifted_resources.labels(env, "kubernetes", "Deployment", "modified").set(2)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve, daemon(tmp_path, f"127.0.0.1:{port}"), _Status())
            cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            reload_prometheus(sandbox)
            deadline = time.monotonic() + 60
            scraped = fired = None
            while time.monotonic() < deadline and not fired:
                scraped = scraped or _prom_query(sandbox, f'driftd_drifted_resources{{environment="{env}"}}')
                fired = [a for body in sandbox.alerts() for a in body.get("alerts", [])
                         if a["labels"].get("alertname") == "DriftdDriftPersists"
                         and a["labels"].get("environment") == env and a["status"] == "firing"]
                await anyio.sleep(0.5)
            assert scraped, "Prometheus never scraped driftd's /metrics"
            assert scraped[0]["value"][1] == "2"
            assert fired, "DriftdDriftPersists never reached Alertmanager's webhook"
            assert fired[0]["labels"]["severity"] == "warning"
            assert env in fired[0]["annotations"]["summary"]
            tg.cancel_scope.cancel()
    finally:
        metrics.drifted_resources.remove(env, "kubernetes", "Deployment", "modified")
        cfg_path.write_text(original)
        reload_prometheus(sandbox)
