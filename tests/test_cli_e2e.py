"""The CLI end to end, as subprocesses against the sandbox, for Kubernetes and AWS: `driftd check` (exit
0/1/2, the JSON report shape), `driftd sync` (dry run, then for real), `driftd history` (text and JSON, filters)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon_support import GitRepo, configmap, deployment, driftd_cli, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port
from tests.test_daemon_aws import OPEN_SSH, aws_envs, aws_setup

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

REPORT_KEYS = {"name", "revision", "status", "error", "resources", "drifts", "mode", "checked_at"}
DRIFT_KEYS = {"target", "kind", "api_version", "namespace", "name", "drift", "changes", "action"}


@dataclass
class Cli:
    config: Path

    def __call__(self, *args: str) -> tuple[int, str, str]:
        return driftd_cli(self.config, *args)

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, err = self(*args, "-o", "json")
        assert out.strip(), err
        return code, json.loads(out)


def _env(report: dict[str, Any], name: str) -> dict[str, Any]:
    return {e["name"]: e for e in report["environments"]}[name]


def test_kubernetes_check_sync_history(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ns = f"cli-{tag}"
    docs = [deployment("web", 2), configmap("settings")]
    sandbox.kubectl("create", "namespace", ns)
    try:
        sandbox.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
        git = GitRepo(sandbox, f"cli-{tag}.git", tmp_path / "work")
        rev = git.commit({"k8s/app.yaml": docs})
        envs = [{"name": "k8s", "mode": "alert", "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}},
                {"name": "gone", "mode": "alert", "branch": "no-such-branch",
                 "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}}]
        cli = Cli(write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=tmp_path / "state",
                               port=free_port(), envs=envs))

        # In sync: exit 0 and the documented JSON shape.
        code, report = cli.json("check", "--env", "k8s")
        assert code == 0, report
        env = _env(report, "k8s")
        assert set(env) == REPORT_KEYS
        assert (env["revision"], env["status"], env["error"], env["resources"], env["drifts"]) == \
            (rev, "in_sync", None, 2, [])
        assert env["checked_at"].endswith("Z")

        # Drift: exit 1, the change named, who made it.
        sandbox.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=5")
        code, report = cli.json("check", "--env", "k8s")
        assert code == 1
        env = _env(report, "k8s")
        assert env["status"] == "drifted"
        (d,) = env["drifts"]
        assert DRIFT_KEYS <= set(d)
        assert (d["target"], d["kind"], d["api_version"], d["namespace"], d["name"], d["drift"], d["action"]) == \
            ("kubernetes", "Deployment", "apps/v1", ns, "web", "modified", "reported")
        c = d["changes"][0]
        assert (c["path"], c["op"], c["expected"], c["actual"]) == ("/spec/replicas", "not_equal", 2, 5)
        assert "kubectl" in (d["changed_by"] or "")
        code, text, _ = cli("check", "--env", "k8s")
        assert code == 1
        assert "drifted" in text
        assert "/spec/replicas" in text

        # An environment that cannot be checked: exit 2, whatever the others say.
        code, report = cli.json("check")
        assert code == 2
        assert _env(report, "gone")["status"] == "error"
        assert "no-such-branch" in _env(report, "gone")["error"]
        assert _env(report, "k8s")["status"] == "drifted"

        # sync --dry-run changes nothing; sync reverts and records; then check is clean.
        code, report = cli.json("sync", "--env", "k8s", "--dry-run")
        assert int(sandbox.kubectl_json("get", "deployment", "web", "-n", ns)["spec"]["replicas"]) == 5
        assert code == 1
        assert _env(report, "k8s")["drifts"][0]["action"] != "reverted"
        code, report = cli.json("sync", "--env", "k8s")
        assert _env(report, "k8s")["drifts"][0]["action"] == "reverted"
        assert code == 0, "sync exits as check would for what remains: nothing"
        assert int(sandbox.kubectl_json("get", "deployment", "web", "-n", ns)["spec"]["replicas"]) == 2
        code, report = cli.json("check", "--env", "k8s")
        assert code == 0
        assert _env(report, "k8s")["status"] == "in_sync"

        # history: JSON with filters, and text.
        code, hist = cli.json("history", "--env", "k8s", "--since", "1h")
        assert code == 0
        events = hist["events"]
        # The dry run is on record too, as would_revert.
        assert [e["event"] for e in events][:3] == ["detected", "would_revert", "reverted"]
        rev_ev = [e for e in events if e["event"] == "reverted"][0]
        assert rev_ev["actor"].startswith("cli:")
        assert (rev_ev["kind"], rev_ev["namespace"], rev_ev["name"]) == ("Deployment", ns, "web")
        assert rev_ev["revision"] == rev
        assert rev_ev["changes"][0]["path"] == "/spec/replicas"
        code, only = cli.json("history", "--object", f"Deployment/{ns}/web")
        assert code == 0
        assert {e["name"] for e in only["events"]} == {"web"}
        assert len(only["events"]) == len(events)
        code, none = cli.json("history", "--object", "ConfigMap/settings")
        assert (code, none["events"]) == (0, [])
        code, none = cli.json("history", "--env", "gone")
        assert (code, none["events"]) == (0, [])
        code, text, _ = cli("history", "--env", "k8s")
        assert code == 0
        assert "reverted" in text
        assert f"{ns}/web" in text
        assert text.rstrip().endswith(f"{len(events)} event(s)")
        code, _, err = cli("history", "--since", "yesterday-ish")
        assert code == 2
        assert "--since" in err
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_aws_check_sync_history(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git, names, groups = aws_setup(sandbox, tmp_path, monkeypatch)
    cli = Cli(write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=tmp_path / "state",
                           port=free_port(), envs=aws_envs(), aws=True))
    code, report = cli.json("check", "--target", "aws")
    assert code == 0, report
    assert all(e["status"] == "in_sync" and e["resources"] == 1 for e in report["environments"])

    sandbox.boto3_client("ec2").authorize_security_group_ingress(GroupId=groups["enforce"], IpPermissions=OPEN_SSH)
    code, report = cli.json("check")
    assert code == 1
    (d,) = _env(report, "enforce")["drifts"]
    assert (d["target"], d["kind"], d["namespace"], d["name"], d["drift"], d["action"]) == \
        ("aws", "AWS::EC2::SecurityGroup", sandbox.aws_region, names["enforce"], "modified", "reported")
    (c,) = d["changes"]
    assert c["op"] == "add"
    assert "expected" not in c
    assert "0.0.0.0/0" in json.dumps(c["actual"])
    assert _env(report, "alert")["status"] == "in_sync"

    code, report = cli.json("sync", "--env", "enforce")
    assert code == 0, report
    assert _env(report, "enforce")["drifts"][0]["action"] == "reverted"
    g = sandbox.boto3_client("ec2").describe_security_groups(GroupIds=[groups["enforce"]])["SecurityGroups"][0]
    assert [p["FromPort"] for p in g["IpPermissions"]] == [443]
    code, _report = cli.json("check", "--env", "enforce")
    assert code == 0

    code, hist = cli.json("history", "--object", f"AWS::EC2::SecurityGroup/{sandbox.aws_region}/{names['enforce']}")
    assert code == 0
    kinds = [e["event"] for e in hist["events"]]
    assert kinds[0] == "baseline", "sync records the baseline of undeclared properties (here: egress)"
    assert kinds[1:3] == ["detected", "reverted"]
    assert all(e["environment"] == "enforce" and e["target"] == "aws" for e in hist["events"])
    code, text, _ = cli("history", "--env", "enforce")
    assert code == 0
    assert "AWS::EC2::SecurityGroup" in text
    assert "reverted" in text
