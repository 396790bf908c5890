"""Issue 14 §3: secret-like values never leave the process.

Distinct values are planted, in Git and by hand, where today they leaked: container and
initContainer env vars named like secrets (changed and added with kubectl), a Lambda's
Environment.Variables (changed with boto3), and a value the API server echoes in an error (an
invalid label whose key looks secret). Then all six channels are searched for every one of them:
the daemon's log, the alerts as Alertmanager's webhook received them, /metrics, every file under
state_dir, the HTTP API, and CLI output (check text and json, history text and json).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from driftd.diff.secrets import configure, redact_changes, secret_name, secret_values
from driftd.model import REDACTED, Change
from tests.daemon_support import ROOT, DaemonProc, GitRepo, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

RUN = uuid.uuid4().hex[:6]
# Every planted value: distinct, and long enough to be unmistakable in a grep.
PLANTED = {
    "git_db": f"git-db-pw-{RUN}-a1",
    "git_init": f"git-init-tok-{RUN}-b2",
    "hand_db": f"hand-db-pw-{RUN}-c3",
    "hand_new": f"hand-apikey-{RUN}-d4",
    "hand_init": f"hand-init-tok-{RUN}-e5",
    "git_lambda": f"git-lambda-pw-{RUN}-f6",
    "hand_lambda": f"hand-lambda-pw-{RUN}-g7",
    "label": f"bad-label-{RUN}-h8!!",  # invalid as a label value: the API server quotes it in its error
    "custom": f"custom-dsn-{RUN}-i9",  # a name only the configured pattern catches
}


def _deployment(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox:1.36",
                                        "env": [{"name": "MIGRATE_TOKEN", "value": PLANTED["git_init"]}]}],
                    "containers": [{"name": "web", "image": "nginx:1.27",
                                    "env": [{"name": "LOG_LEVEL", "value": "info"},
                                            {"name": "DB_PASSWORD", "value": PLANTED["git_db"]},
                                            {"name": "WAREHOUSE_URI", "value": "plain"}]}],
                },
            },
        },
    }


def _bad_configmap(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bad", "namespace": ns, "labels": {"api-token": PLANTED["label"]}},
            "data": {"x": "y"}}


def _template(role_arn: str) -> str:
    return f"""\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: fn-{RUN}
      Runtime: python3.12
      Handler: index.handler
      MemorySize: 128
      Timeout: 3
      Role: {role_arn}
      Environment: {{Variables: {{DB_PASSWORD: "{PLANTED['git_lambda']}", STAGE: test}}}}
      Code: {{ZipFile: "def handler(e, c):\\n    return 1\\n"}}
"""


@dataclass
class Run:
    sb: Sandbox
    daemon: DaemonProc
    config: Path
    state: Path
    ns: str
    envs: dict[str, str]


@pytest.fixture(scope="module")
def run(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("secrets")
    ns = f"secrets-{RUN}"
    sandbox.kubectl("create", "namespace", ns)
    # in sync to start with: applied as driftd would
    dep = tmp / "dep.json"
    dep.write_text(json.dumps(_deployment(ns)))
    sandbox.kubectl("-n", ns, "apply", "--server-side", "--field-manager=driftd", "-f", str(dep))
    iam, lam = sandbox.boto3_client("iam"), sandbox.boto3_client("lambda")
    role = iam.create_role(RoleName=f"fn-{RUN}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", "def handler(e, c):\n    return 1\n")
    lam.create_function(FunctionName=f"fn-{RUN}", Runtime="python3.12", Role=role, Handler="index.handler",
                        Code={"ZipFile": buf.getvalue()}, MemorySize=128, Timeout=3,
                        Environment={"Variables": {"DB_PASSWORD": PLANTED["git_lambda"], "STAGE": "test"}})
    git = GitRepo(sandbox, f"secrets-{RUN}.git", tmp / "work")
    git.commit({"kubernetes/app.yaml": _deployment(ns), "bad/cm.yaml": _bad_configmap(ns),
                "aws/fn.yaml": _template(role)})
    port = free_port()
    state = tmp / "state"
    envs = {"k8s": f"k8s-{RUN}", "bad": f"bad-{RUN}", "aws": f"aws-{RUN}"}
    config = write_config(tmp / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port,
                          alertmanager=True, resend_interval="5s", aws=True, envs=[
                              {"name": envs["k8s"], "mode": "alert", "interval": "2s",
                               "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "kubernetes"}},
                              {"name": envs["bad"], "mode": "enforce", "interval": "2s",
                               "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "bad"}},
                              {"name": envs["aws"], "mode": "alert", "interval": "2s",
                               "aws": {"account": "sandbox", "path": "aws", "unmanaged": False}}])
    # a configured pattern on top of the defaults: WAREHOUSE_URI would not look secret otherwise
    text = config.read_text().replace("[daemon]\n", "[daemon]\nsecret_name_patterns = [\"warehouse_uri\"]\n", 1)
    config.write_text(text)
    mp = pytest.MonkeyPatch()
    for k, v in sandbox.env().items():  # moto's credentials and endpoint, for the daemon
        mp.setenv(k, v)
    d = DaemonProc(config, state, port, tmp / "driftd.log").start()
    try:
        wait_for(lambda: d.environments().get(envs["k8s"], {}).get("checked_at"), 90,
                 lambda: f"first check; log tail:\n{d.tail()}")
        # by hand, as an operator would: kubectl and the AWS API
        sandbox.kubectl("-n", ns, "patch", "deployment", "web", "--type=json", "-p", json.dumps([
            {"op": "replace", "path": "/spec/template/spec/containers/0/env/1/value", "value": PLANTED["hand_db"]},
            {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
             "value": {"name": "STRIPE_API_KEY", "value": PLANTED["hand_new"]}},
            {"op": "replace", "path": "/spec/template/spec/containers/0/env/2/value", "value": PLANTED["custom"]},
            {"op": "replace", "path": "/spec/template/spec/initContainers/0/env/0/value",
             "value": PLANTED["hand_init"]}]))
        lam.update_function_configuration(FunctionName=f"fn-{RUN}", Environment={
            "Variables": {"DB_PASSWORD": PLANTED["hand_lambda"], "STAGE": "test"}})
        yield Run(sandbox, d, config, state, ns, envs)
    finally:
        mp.undo()
        if d.alive():
            d.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _leaks(text: str) -> list[str]:
    return [k for k, v in PLANTED.items() if v in text or v.rstrip("!") in text]


def _drift(envs: dict[str, Any], env: str, kind: str) -> dict[str, Any] | None:
    e = envs.get(env) or {}
    return next((x for x in e.get("drifts", ()) if x["kind"] == kind), None)


@pytest.mark.sandbox
@pytest.mark.slow
def test_planted_values_reach_no_channel(run: Run) -> None:
    d, envs = run.daemon, run.envs

    def seen() -> bool:
        e = d.environments()
        web, fn = _drift(e, envs["k8s"], "Deployment"), _drift(e, envs["aws"], "AWS::Lambda::Function")
        return bool(web and fn and any("/env" in c["path"] for c in web["changes"])
                    and any(c["path"].startswith("/Environment") for c in fn["changes"])
                    and e.get(envs["bad"], {}).get("checked_at"))

    wait_for(seen, 90, lambda: f"drifts seen; {json.dumps(d.environments().get(envs['aws']))[:3000]}")
    alerts = wait_for(lambda: [a for b in run.sb.alerts() for a in b.get("alerts", [])
                               if a["labels"].get("environment") in envs.values()
                               and a["labels"].get("name") in ("web", f"fn-{RUN}")], 60, "alerts at the webhook")
    # the drift is there, masked: paths and names shown, values not
    e = d.environments()
    web = _drift(e, envs["k8s"], "Deployment")
    assert web is not None
    env_changes = [c for c in web["changes"] if "/env" in c["path"]]
    assert env_changes, web
    assert REDACTED in json.dumps(env_changes)
    assert {a["labels"]["name"] for a in alerts} >= {"web"}
    # the bad object's error is reported, with the label's key but not its value
    bad = e[envs["bad"]]
    bad_text = json.dumps(bad)
    assert "api-token" in bad_text or "label" in bad_text, bad

    channels: dict[str, str] = {}
    channels["api"] = "".join(_get(d.port, p) for p in (
        "/api/v1/environments", f"/api/v1/environments/{envs['k8s']}", f"/api/v1/environments/{envs['aws']}",
        f"/api/v1/environments/{envs['k8s']}/objects/kubernetes/Deployment/{run.ns}/web"))
    channels["metrics"] = _get(d.port, "/metrics")
    channels["alerts"] = json.dumps(run.sb.alerts())
    assert d.stop() == 0
    channels["log"] = d.log.read_text(errors="replace")
    cli_env = {**os.environ, **run.sb.env(), "PYTHONPATH": str(ROOT)}
    for name, argv in {"check-json": ["check", "-o", "json"], "check-text": ["check"],
                       "history-text": ["history"], "history-json": ["history", "-o", "json"]}.items():
        p = subprocess.run([sys.executable, "-m", "driftd", *argv, "-c", str(run.config)], capture_output=True,
                           text=True, env=cli_env, cwd=ROOT, timeout=180)
        assert p.returncode in (0, 1, 2), p.stderr
        channels[f"cli-{name}"] = p.stdout + p.stderr
    assert "web" in channels["cli-check-json"]
    assert "fn-" in channels["cli-history-text"] or "web" in channels["cli-history-text"]
    for f in sorted(run.state.rglob("*")):
        if f.is_file():
            channels[f"state:{f.relative_to(run.state)}"] = f.read_bytes().decode("latin-1")
    assert any(k.startswith("state:driftd.db") for k in channels)
    leaks = {ch: _leaks(text) for ch, text in channels.items() if _leaks(text)}
    assert leaks == {}, f"planted values found: {leaks}"


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return str(r.read().decode())


# --- the policy, without servers ---------------------------------------------------------------------------


def test_env_values_masked_in_every_pod_template_shape() -> None:
    pod = {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}],
                    "initContainers": [{"name": "i", "env": [{"name": "DB_PASSWORD", "value": "p1"}]}],
                    "ephemeralContainers": [{"name": "dbg", "env": [{"name": "GH_TOKEN", "value": "t1"}]}]}}
    cron = {"spec": {"jobTemplate": {"spec": {"template": pod}}}}
    live = json.loads(json.dumps(cron).replace('"p1"', '"p2"').replace('"t1"', '"t2"'))
    base = "/spec/jobTemplate/spec/template/spec"
    changes = [Change(f"{base}/initContainers/0/env/0/value", "p1", "p2"),
               Change(f"{base}/ephemeralContainers/0/env/0/value", "t1", "t2"),
               Change(f"{base}/containers/0/env/0/value", "1", "2"),
               Change(f"{base}/containers/0/env", None,
                      [{"name": "SIGNING_KEY", "value": "k"}, {"name": "Y", "value": "v"}])]
    out = redact_changes("CronJob", changes, objects=(cron, live))
    assert (out[0].expected, out[0].actual) == (REDACTED, REDACTED)
    assert (out[1].expected, out[1].actual) == (REDACTED, REDACTED)
    assert (out[2].expected, out[2].actual) == ("1", "2")  # an ordinary variable stays readable
    assert out[3].actual == [{"name": "SIGNING_KEY", "value": REDACTED}, {"name": "Y", "value": "v"}]


def test_configured_patterns_add_to_the_defaults() -> None:
    assert not secret_name("WAREHOUSE_URI")
    configure(["warehouse_uri"])
    try:
        assert secret_name("WAREHOUSE_URI")
        assert secret_name("DB_PASSWORD")  # the defaults stay
    finally:
        configure()
    for name in ("DB_PASSWORD", "api_key", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "SIGNING_KEY", "credentials"):
        assert secret_name(name), name
    for name in ("LOG_LEVEL", "REPLICAS", "PORT"):
        assert not secret_name(name), name


def test_lambda_environment_masked_by_kind_and_error_values_collected() -> None:
    (c,) = redact_changes("AWS::Lambda::Function", [Change("/Environment/Variables/DB_PASSWORD", "a", "b")])
    assert (c.expected, c.actual) == (REDACTED, REDACTED)
    (c,) = redact_changes("AWS::Lambda::Function", [Change("/Environment", None, {"Variables": {"STAGE": "x1"}})])
    assert c.actual == {"Variables": {"STAGE": REDACTED}}
    secret = {"kind": "Secret", "data": {"k": "c2VjcmV0LXZhbHVl"}, "stringData": {"p": "clear-text"}}
    assert {"c2VjcmV0LXZhbHVl", "secret-value", "clear-text"} <= secret_values(secret)
    assert secret_values({"metadata": {"labels": {"api-token": "abcdef"}}}) == {"abcdef"}
