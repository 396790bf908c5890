"""The sandbox servers are real: each answers the way production does."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from dulwich.client import get_transport_and_path
from dulwich.objects import Commit
from dulwich.refs import Ref
from dulwich.repo import Repo

from tests.sandbox import (
    Sandbox,
    reload_prometheus,
    restart_kube_apiserver,
    start_alertmanager,
    start_git,
    stop_alertmanager,
    stop_git,
)
from tests.sandbox.oci import MANIFEST_ACCEPT, OCI_MANIFEST, head_manifest, request

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parent.parent

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""


def _uid() -> str:
    return uuid.uuid4().hex[:8]


# -- Kubernetes --------------------------------------------------------------------------


def test_kube_version(sandbox: Sandbox) -> None:
    assert sandbox.kube_version.startswith("v1.34.")
    assert sandbox.kube_server.startswith("https://127.0.0.1:")
    assert "default" in sandbox.kubectl("get", "namespaces", "-o", "name").stdout


def test_deployment_gets_server_defaults(sandbox: Sandbox, k8s_namespace: str) -> None:
    sandbox.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=DEPLOYMENT)
    dep = sandbox.kubectl_json("get", "deployment", "web", "-n", k8s_namespace)
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["revisionHistoryLimit"] == 10
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    assert dep["metadata"]["generation"] == 1


def _kube_call(sb: Sandbox, method: str, path: str, token: str, body: Mapping[str, object] | None = None) -> int:
    ctx = ssl.create_default_context(cafile=sb.kube_ca)
    req = urllib.request.Request(
        sb.kube_server + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def test_rbac_limited_service_account(sandbox: Sandbox, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    sandbox.kubectl("create", "serviceaccount", "reader", "-n", ns)
    sandbox.kubectl("create", "role", "cm-read", "-n", ns, "--verb=get,list", "--resource=configmaps")
    sandbox.kubectl("create", "rolebinding", "reader", "-n", ns, "--role=cm-read", f"--serviceaccount={ns}:reader")
    sandbox.kubectl("create", "configmap", "existing", "-n", ns, "--from-literal=a=b")
    token = sandbox.kubectl("create", "token", "reader", "-n", ns, "--duration=10m").stdout.strip()

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nope"}, "data": {"a": "b"}}
    assert _kube_call(sandbox, "POST", f"/api/v1/namespaces/{ns}/configmaps", token, cm) == 403
    assert _kube_call(sandbox, "GET", f"/api/v1/namespaces/{ns}/configmaps", token) == 200
    assert _kube_call(sandbox, "GET", f"/api/v1/namespaces/{ns}/secrets", token) == 403

    # The same through kubectl, with a kubeconfig holding only the token.
    kc = tmp_path / "reader.kubeconfig"
    kc.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "s", "cluster": {"server": sandbox.kube_server, "certificate-authority": sandbox.kube_ca}}
                ],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [{"name": "s", "context": {"cluster": "s", "user": "reader", "namespace": ns}}],
                "current-context": "s",
            }
        )
    )
    denied = sandbox.kubectl("create", "configmap", "nope", "--from-literal=a=b", kubeconfig=str(kc), check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    listed = sandbox.kubectl("get", "configmaps", "-o", "name", kubeconfig=str(kc))
    assert "configmap/existing" in listed.stdout


# -- AWS (moto) ----------------------------------------------------------------------------


def test_moto_security_group(sandbox: Sandbox) -> None:
    ec2 = sandbox.boto3_client("ec2")
    name = f"sg-test-{_uid()}"
    gid = ec2.create_security_group(GroupName=name, Description="driftd sandbox")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )
    (sg,) = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]
    assert sg["GroupName"] == name
    assert sg["Description"] == "driftd sandbox"
    perms = sg["IpPermissions"]
    assert [(p["FromPort"], p["IpRanges"][0]["CidrIp"]) for p in perms] == [(443, "10.0.0.0/8")]


# -- Git -----------------------------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str:
    cmd = ["git", "-c", "user.name=Sandbox", "-c", "user.email=sandbox@example.invalid", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_push_then_dulwich_fetch(sandbox: Sandbox, tmp_path: Path) -> None:
    name = f"repo-{_uid()}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "--quiet", "--initial-branch=main", cwd=work)
    (work / "app.yaml").write_text("kind: ConfigMap\n")
    _git("add", "app.yaml", cwd=work)
    _git("commit", "--quiet", "-m", "first", cwd=work)
    sha = _git("rev-parse", "HEAD", cwd=work)
    _git("push", "--quiet", url, "main", cwd=work)

    client, path = get_transport_and_path(url)
    mirror = Repo.init_bare(str(tmp_path / "mirror.git"), mkdir=True)
    try:
        result = client.fetch(path, mirror)
        main = Ref(b"refs/heads/main")
        remote = result.refs[main]
        assert remote is not None
        assert remote.decode() == sha
        mirror.refs[main] = remote  # fetch does not write refs
        commit = mirror[remote]
        assert isinstance(commit, Commit)
        assert commit.message == b"first\n"
    finally:
        mirror.close()


def test_git_http_needs_the_token_and_serves_git_daemon_repos(sandbox: Sandbox, tmp_path: Path) -> None:
    if not sandbox.git_http_url:
        pytest.skip(f"the sandbox in {sandbox.dir} predates git-http; recreate it")
    name = f"repo-{_uid()}.git"
    sandbox.new_bare_repo(name)
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "--quiet", "--initial-branch=main", cwd=work)
    _git("commit", "--quiet", "--allow-empty", "-m", "first", cwd=work)
    sha = _git("rev-parse", "HEAD", cwd=work)
    _git("push", "--quiet", sandbox.git_http_repo_url(name, with_credentials=True), "main", cwd=work)

    # Same git_root as the git daemon: pushed over HTTP, visible over git://.
    assert _git("ls-remote", sandbox.git_repo_url(name), "refs/heads/main", cwd=work).split()[0] == sha
    env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"}
    anonymous = subprocess.run(
        ["git", "ls-remote", sandbox.git_http_repo_url(name)], capture_output=True, text=True, env=env, timeout=30
    )
    assert anonymous.returncode != 0
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(sandbox.git_http_repo_url(name) + "/info/refs?service=git-upload-pack", timeout=10)
    assert info.value.code == 401
    info.value.close()


# -- Registries ----------------------------------------------------------------------------


def test_registry_push_and_head(sandbox: Sandbox) -> None:
    repo = f"sandbox/app-{_uid()}"
    dg = sandbox.push_image(repo, "v1")
    head = head_manifest(sandbox.registry, repo, "v1")
    assert head.status == 200
    assert head.headers["docker-content-digest"] == dg
    assert head.headers["content-type"] == OCI_MANIFEST
    assert head_manifest(sandbox.registry, repo, dg).status == 200
    assert head_manifest(sandbox.registry, repo, "missing").status == 404
    # A new push under the same tag moves it: the digest a drift check compares changes.
    dg2 = sandbox.push_image(repo, "v1", {"hello.txt": b"changed\n"})
    assert dg2 != dg
    assert head_manifest(sandbox.registry, repo, "v1").headers["docker-content-digest"] == dg2


def test_registry_with_basic_auth(sandbox: Sandbox) -> None:
    repo = f"private/app-{_uid()}"
    anon = request("GET", f"http://{sandbox.registry_auth}/v2/")
    assert anon.status == 401
    assert anon.headers["www-authenticate"].startswith("Basic ")
    assert request("GET", f"http://{sandbox.registry_auth}/v2/", auth=("x", "wrong")).status == 401
    dg = sandbox.push_image(repo, "v1", auth=True)
    assert head_manifest(sandbox.registry_auth, repo, "v1").status == 401
    head = head_manifest(sandbox.registry_auth, repo, "v1", auth=sandbox.registry_creds)
    assert head.status == 200
    assert head.headers["docker-content-digest"] == dg
    assert OCI_MANIFEST in MANIFEST_ACCEPT


# -- Alertmanager / Prometheus -------------------------------------------------------------


def _post_alert(am: str, alertname: str) -> None:
    body = json.dumps([{"labels": {"alertname": alertname, "severity": "warning"}, "annotations": {"x": "y"}}])
    req = urllib.request.Request(
        f"{am}/api/v2/alerts", data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def _has_alert(name: str, am: str | None = None):  # type: ignore[no-untyped-def]
    def pred(body: dict[str, object]) -> bool:
        alerts = body.get("alerts")
        assert isinstance(alerts, list)
        return any(a["labels"].get("alertname") == name for a in alerts) and (
            am is None or str(body.get("externalURL", "")).rstrip("/") == am
        )

    return pred


def test_alertmanagers_notify_webhook(sandbox: Sandbox) -> None:
    assert sandbox.alertmanager_group_wait == "1s"
    name1, name2 = f"Sandbox1_{_uid()}", f"Sandbox2_{_uid()}"
    t0 = time.monotonic()
    _post_alert(sandbox.alertmanager, name1)
    _post_alert(sandbox.alertmanager2, name2)
    body = sandbox.wait_for_alert(_has_alert(name1, sandbox.alertmanager), timeout=10)
    assert body["status"] == "firing"
    assert body["receiver"] == "webhook"
    sandbox.wait_for_alert(_has_alert(name2, sandbox.alertmanager2), timeout=10)
    assert time.monotonic() - t0 < 10


def test_prometheus_ready_and_reloads(sandbox: Sandbox) -> None:
    with urllib.request.urlopen(f"{sandbox.prometheus}/-/ready", timeout=10) as r:
        assert r.status == 200
    assert Path(sandbox.prometheus_config).is_file()
    reload_prometheus(sandbox)


# -- The CLI -------------------------------------------------------------------------------


def test_second_up_is_refused(sandbox: Sandbox) -> None:
    cmd = [sys.executable, "-m", "tests.sandbox"]
    out = subprocess.run([*cmd, "up", sandbox.dir], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "already running" in out.stderr
    st = subprocess.run([*cmd, "status", sandbox.dir], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert st.returncode == 0, st.stdout
    assert "kube-apiserver" in st.stdout


# -- Failure injection (skipped on a shared sandbox unless DRIFTD_SANDBOX_FAULTS=1) -------------


def test_restart_kube_apiserver_keeps_objects(sandbox_faults: Sandbox, k8s_namespace: str) -> None:
    sb = sandbox_faults
    sb.kubectl("create", "configmap", "survivor", "-n", k8s_namespace, "--from-literal=a=b")
    restart_kube_apiserver(sb)
    assert sb.kubectl_json("get", "configmap", "survivor", "-n", k8s_namespace)["data"] == {"a": "b"}


def test_stop_and_start_git(sandbox_faults: Sandbox, tmp_path: Path) -> None:
    sb = sandbox_faults
    name = f"flaky-{_uid()}.git"
    sb.new_bare_repo(name)
    url = sb.git_repo_url(name)
    stop_git(sb)
    try:
        down = subprocess.run(["git", "ls-remote", url], capture_output=True, text=True, timeout=30)
        assert down.returncode != 0
    finally:
        start_git(sb)
    assert subprocess.run(["git", "ls-remote", url], capture_output=True, timeout=30).returncode == 0


def test_stop_and_start_alertmanager(sandbox_faults: Sandbox) -> None:
    sb = sandbox_faults
    stop_alertmanager(sb)
    try:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{sb.alertmanager}/-/ready", timeout=5)
    finally:
        start_alertmanager(sb)
    name = f"AfterRestart_{_uid()}"
    _post_alert(sb.alertmanager, name)
    sb.wait_for_alert(_has_alert(name, sb.alertmanager), timeout=10)
