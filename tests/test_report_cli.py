"""`driftd report` end to end against the sandbox: a fresh check and the state store, as markdown,
HTML and JSON; drifts made with kubectl as an operator would; Secret values never printed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from tests.daemon_support import GitRepo, configmap, deployment, write_config
from tests.daemon_support import driftd_cli as driftd
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque",
          "stringData": {"password": "hunter2-in-git"}}


def test_report_fresh_and_from_state_store(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"report-{tag}"
    docs = [deployment("web", 2), configmap("settings"), SECRET]
    sandbox.kubectl("create", "namespace", ns)
    try:
        sandbox.kubectl("apply", "--server-side", "--field-manager=driftd", "-n", ns, "-f", "-",
                        input=yaml.safe_dump_all(docs))
        git = GitRepo(sandbox, f"report-{tag}.git", tmp_path / "work")
        git.commit({"k8s/app.yaml": docs})
        envs = [{"name": "shop", "mode": "alert", "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}}]
        cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=tmp_path / "state",
                           port=free_port(), envs=envs)

        code, md, err = driftd(cfg, "report", "--fresh")
        assert code == 0, err
        assert "| shop | ✅ in sync | alert |" in md

        # Out-of-band changes, as an operator would make them.
        sandbox.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=5")
        sandbox.kubectl("-n", ns, "patch", "secret", "db", "--type=merge", "-p",
                        json.dumps({"stringData": {"password": "changed-live-secret"}}))
        sandbox.kubectl("-n", ns, "patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"k":"live"}}')

        code, md, err = driftd(cfg, "report", "--fresh", "--format", "markdown")
        assert code == 1, err
        assert "| shop | ⚠️ drifted | alert |" in md
        # Grouped by kind, each with its diff.
        assert md.index("#### ConfigMap") < md.index("#### Deployment") < md.index("#### Secret")
        assert f"`Deployment/{ns}/web`: **modified** by **kubectl" in md, md
        assert "@@ /spec/replicas\n  - 2\n  + 5" in md
        assert "@@ /data/k\n  - v\n  + live" in md
        for secret in ("hunter2", "changed-live-secret", "aHVudGVy", "Y2hhbmdlZC1saXZl"):
            assert secret not in md, "a Secret value leaked into the report"

        # No state store yet: it says so and falls back to a fresh check.
        code, _out, err = driftd(cfg, "report", "--format", "json")
        assert code == 1
        assert "fresh read-only check" in err

        # `sync --dry-run` records the drifts in the state store (as the daemon does); the report reads them.
        code, _out, err = driftd(cfg, "sync", "--env", "shop", "--dry-run")
        assert code == 1, err
        code, out, err = driftd(cfg, "report", "--format", "json", "--since", "1h")
        assert code == 1, err
        data = json.loads(out)
        assert data["source"] == "state"
        (env,) = data["environments"]
        assert env["status"] == "drifted"
        assert env["mode"] == "alert"
        assert env["revision"]
        by_kind = {d["kind"]: d for d in env["drifts"]}
        assert set(by_kind) == {"ConfigMap", "Deployment", "Secret"}
        assert by_kind["Deployment"]["changes"][0]["actual"] == 5
        assert by_kind["Deployment"]["first_seen"].endswith("Z")
        assert {e["event"] for e in data["events"]} >= {"would_revert"}
        assert "changed-live-secret" not in out
        assert "hunter2" not in out

        code, html, err = driftd(cfg, "report", "--format", "html", "--env", "shop")
        assert code == 1, err
        assert html.startswith("<!DOCTYPE html>")
        assert "<style>" in html
        assert "src=" not in html
        assert f'data-object="Deployment/{ns}/web"' in html
        assert '<span class="exp">- 2</span>' in html
        assert '<span class="act">+ 5</span>' in html
        assert "changed-live-secret" not in html

        code, _out, err = driftd(cfg, "report", "--env", "nope")
        assert code == 2
        assert "no environment named 'nope'" in err
        code, _out, err = driftd(cfg, "report", "--since", "yesterday-ish")
        assert code == 2
        assert "--since" in err
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
