"""`driftd diff --revision` and `driftd adopt` end to end against the sandbox's git server and
kube-apiserver: a pull-request branch previewed (exit 1 with its changes, 0 for the branch itself,
nothing changed live); a kubectl drift adopted into a new branch driftd/adopt/... keeping the
manifest's comments, the environment branch untouched, and after merging that branch `driftd check`
is clean. Secrets are never written."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.daemon_support import GitRepo, write_config
from tests.daemon_support import driftd_cli as driftd
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

MANIFEST = """\
# The shop's web tier. Replicas are sized for the evening peak.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web  # the public name
spec:
  replicas: 2   # see capacity.md
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: "nginx:1.27"  # pinned by the platform team
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: "calm"
---
apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: from-git
"""


def git(work: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=work, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path):  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    ns = f"adopt-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    repo = GitRepo(sandbox, f"adopt-{tag}.git", tmp_path / "work")
    repo.commit({"k8s/app.yaml": MANIFEST})
    sandbox.kubectl("apply", "--server-side", "--field-manager=driftd", "-n", ns, "-f",
                    str(tmp_path / "work" / "k8s" / "app.yaml"))
    envs = [{"name": "shop", "mode": "alert", "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}}]
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=tmp_path / "state",
                       port=free_port(), envs=envs)
    yield cfg, repo, ns
    sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_diff_previews_a_pull_request_branch(sandbox: Sandbox, env) -> None:  # type: ignore[no-untyped-def]
    cfg, repo, ns = env
    assert driftd(cfg, "diff", "--env", "shop", "--revision", "main")[0] == 0
    pr = MANIFEST.replace("replicas: 2", "replicas: 4").replace('mode: "calm"', 'mode: "busy"')
    pr = pr.split("---\napiVersion: v1\nkind: Secret")[0] + "---\n" + yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}, "data": {"a": "1"}})
    sha = repo.commit({"k8s/app.yaml": pr}, branch="pr-42", message="scale up")
    git(repo.work, "tag", "-a", "v2", "-m", "v2")
    git(repo.work, "push", "-q", "origin", "v2")

    code, out, err = driftd(cfg, "diff", "--env", "shop", "--revision", "pr-42", "--output", "json")
    assert code == 1, err
    data = json.loads(out)
    assert data["revision"] == sha
    got = {(c["kind"], c["name"]): c for c in data["changes"]}
    assert got[("Deployment", "web")]["would"] == "change"
    (rep,) = got[("Deployment", "web")]["changes"]
    assert (rep["path"], rep["expected"], rep["actual"]) == ("/spec/replicas", 2, 4)  # - live, + after the apply
    assert got[("ConfigMap", "extra")]["would"] == "create"
    assert got[("ConfigMap", "settings")]["changes"][0]["actual"] == "busy"
    # The Secret is no longer declared at pr-42; prune is off, so it stays.
    assert [k["name"] for k in data["not_pruned"]] == ["db"]

    for ref in ("v2", sha[:10]):  # a tag, a commit prefix
        code, out, _ = driftd(cfg, "diff", "--env", "shop", "--revision", ref)
        assert code == 1
        assert f"would change kubernetes Deployment/{ns}/web" in out
        assert "@@ /spec/replicas\n   - 2\n   + 4" in out
    code, md, _ = driftd(cfg, "diff", "--env", "shop", "--revision", "pr-42", "--output", "markdown")
    assert code == 1
    assert "## driftd diff: shop at pr-42" in md
    assert "```diff" in md
    code, _out, err = driftd(cfg, "diff", "--env", "shop", "--revision", "no-such-ref")
    assert code == 2
    assert "no branch, tag or commit named 'no-such-ref'" in err
    # Nothing changed live.
    assert sandbox.kubectl_json("get", "deployment", "web", "-n", ns)["spec"]["replicas"] == 2
    assert sandbox.kubectl("get", "configmap", "extra", "-n", ns, check=False).returncode != 0


def test_adopt_writes_live_values_on_a_new_branch_and_check_is_clean_after_merge(
        sandbox: Sandbox, env) -> None:  # type: ignore[no-untyped-def]
    cfg, repo, ns = env
    main_before = git(repo.work, "ls-remote", "origin", "refs/heads/main").split()[0]
    sandbox.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=5")
    sandbox.kubectl("-n", ns, "patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"mode":"busy"}}')
    sandbox.kubectl("-n", ns, "label", "configmap", "settings", "team=shop")
    assert driftd(cfg, "check")[0] == 1

    # A Secret is never adopted.
    code, _out, err = driftd(cfg, "adopt", "--env", "shop", "--object", "Secret/db")
    assert code == 2
    assert "never written to Git" in err

    code, out, err = driftd(cfg, "adopt", "--env", "shop", "--object", f"Deployment/{ns}/web")
    assert code == 0, err
    branch = out.strip().splitlines()[-1]
    assert branch.startswith("driftd/adopt/shop/deployment-web-")
    code, out, err = driftd(cfg, "adopt", "--env", "shop", "--object", "ConfigMap/settings")
    assert code == 0, err
    branch2 = out.strip().splitlines()[-1]
    assert branch2.startswith("driftd/adopt/shop/configmap-settings-")

    # The environment's branch was not touched.
    assert git(repo.work, "ls-remote", "origin", "refs/heads/main").split()[0] == main_before
    git(repo.work, "fetch", "-q", "origin", branch, branch2)
    text = git(repo.work, "show", f"origin/{branch}:k8s/app.yaml")
    # Only the value changed: comments, quotes and layout stay.
    assert text == MANIFEST.replace("replicas: 2   # see", "replicas: 5   # see")
    text2 = git(repo.work, "show", f"origin/{branch2}:k8s/app.yaml")
    assert 'mode: "busy"' in text2
    assert "team: shop" in text2
    assert "from-git" in text2  # the Secret's document is as it was
    assert "# The shop's web tier." in text2

    # Merge both, as a reviewer would, and push main: Git now matches what runs.
    git(repo.work, "checkout", "-q", "main")
    git(repo.work, "merge", "-q", "--no-edit", f"origin/{branch}")
    git(repo.work, "merge", "-q", "--no-edit", f"origin/{branch2}")
    git(repo.work, "push", "-q", "origin", "main")
    code, out, err = driftd(cfg, "check", "-o", "json")
    assert json.loads(out)["environments"][0]["drifts"] == []
    assert code == 0, out
    code, out, err = driftd(cfg, "adopt", "--env", "shop", "--object", f"Deployment/{ns}/web")
    assert code == 0
    assert "no drift to adopt" in err


def test_adopt_never_writes_a_masked_value_and_says_what_it_left_out(
        sandbox: Sandbox, env) -> None:  # type: ignore[no-untyped-def]
    """Issue 22 §9: an env entry named like a password, added by hand below the top level of a change
    (the container's env list), was written into the adopt branch as "(redacted)": merged, enforce
    would have applied it. Now it is left out, named on stderr and in the commit message; the rest
    of the change is adopted."""
    cfg, repo, ns = env
    sandbox.kubectl("-n", ns, "set", "env", "deployment/web", "DB_PASSWORD=hunter2-live-value", "LOG_LEVEL=debug")
    code, out, err = driftd(cfg, "adopt", "--env", "shop", "--object", f"Deployment/{ns}/web")
    assert code == 0, err
    branch = out.strip().splitlines()[-1]
    git(repo.work, "fetch", "-q", "origin", branch)
    text = git(repo.work, "show", f"origin/{branch}:k8s/app.yaml")
    assert "LOG_LEVEL" in text
    assert "debug" in text
    assert "(redacted)" not in text
    assert "hunter2" not in text
    assert "DB_PASSWORD" not in text
    assert "masked" in err
    assert "/spec/template/spec/containers/0/env/0" in err
    log = git(repo.work, "log", "-1", "--format=%B", f"origin/{branch}")
    assert "Left out" in log
    assert "/spec/template/spec/containers/0/env/0: masked" in log
    assert "hunter2" not in log + err + out


def test_diff_of_an_aws_environment_compares_declared_properties(sandbox: Sandbox, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_daemon_aws import TEMPLATE, aws_envs, aws_setup

    git_repo, names, groups = aws_setup(sandbox, tmp_path, monkeypatch)
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git_repo.url, state_dir=tmp_path / "state",
                       port=free_port(), envs=aws_envs(), aws=True)
    assert driftd(cfg, "diff", "--env", "alert", "--revision", "alert")[0] == 0
    # A pull request opening SSH as well, on its own branch.
    pr = TEMPLATE.replace("NAME", names["alert"]).replace(
        "      Tags:", "        - {IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: 10.1.0.0/16}\n      Tags:")
    git_repo.commit({"aws/sg.yaml": pr}, branch="alert-pr")
    code, out, err = driftd(cfg, "diff", "--env", "alert", "--revision", "alert-pr", "--output", "json")
    assert code == 1, err
    (change,) = json.loads(out)["changes"]
    assert (change["kind"], change["name"], change["would"]) == ("AWS::EC2::SecurityGroup", names["alert"], "change")
    assert "10.1.0.0/16" in json.dumps(change["changes"])
    # Nothing changed live.
    g = sandbox.boto3_client("ec2").describe_security_groups(GroupIds=[groups["alert"]])["SecurityGroups"][0]
    assert [p["FromPort"] for p in g["IpPermissions"]] == [443]
