"""The shipped in-cluster manifests against the sandbox's real API server (RBAC on).

driftd runs as the shipped ServiceAccount: a token from the TokenRequest API (`kubectl create token`)
laid out like the kubelet's mount (token, ca.crt, namespace; DRIFTD_SERVICEACCOUNT_DIR points at it)
and KUBERNETES_SERVICE_HOST/PORT pointing at the API server, no kubeconfig. With ClusterRole
driftd-observe it checks an alert environment, and an enforce environment's revert is refused with a
message naming the missing permission; with driftd-enforce bound as well the revert goes through.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "config" / "kubernetes" / "base"
ENFORCE = ROOT / "config" / "kubernetes" / "enforce"
SA_USER = "system:serviceaccount:driftd:driftd"
DRIFTD = [sys.executable, "-m", "driftd"]

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


# --- against the API server -----------------------------------------------------------------------

def _kubectl(sandbox: Sandbox, *args: str, input: str | None = None, check: bool = True) -> str:
    return sandbox.kubectl(*args, input=input, check=check).stdout


def _can(sandbox: Sandbox, verb: str, resource: str, ns: str) -> bool:
    out = sandbox.kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={SA_USER}", check=False)
    return out.stdout.strip() == "yes"


def _wait(pred: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def shipped(sandbox: Sandbox) -> Iterator[Sandbox]:
    """config/kubernetes/base applied as is; the enforce binding removed at the end."""
    _unstick_namespace(sandbox, "driftd")
    _kubectl(sandbox, "apply", "-k", str(BASE))
    _wait(lambda: _can(sandbox, "list", "deployments.apps", "default"), "driftd-observe binding in effect")
    yield sandbox
    # Only the binding: a deleted namespace stays Terminating forever here (no controller manager).
    _kubectl(sandbox, "delete", "clusterrolebinding", "driftd-enforce", "--ignore-not-found", check=False)


def _unstick_namespace(sandbox: Sandbox, name: str) -> None:
    """A namespace someone deleted on a reused sandbox never finishes terminating without the
    namespace controller: finalize it by hand so the base can be applied again."""
    ns = sandbox.kubectl("get", "namespace", name, "-o", "json", check=False)
    if ns.returncode != 0 or json.loads(ns.stdout)["status"].get("phase") != "Terminating":
        return
    obj = json.loads(ns.stdout)
    obj["spec"]["finalizers"] = []
    sandbox.kubectl("replace", "--raw", f"/api/v1/namespaces/{name}/finalize", "-f", "-", input=json.dumps(obj))
    _wait(lambda: sandbox.kubectl("get", "namespace", name, check=False).returncode != 0, f"namespace {name} gone")


@pytest.fixture(scope="module")
def in_cluster(shipped: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables that make driftd believe it runs in a pod as the shipped ServiceAccount."""
    return _pod_env(shipped, tmp_path_factory.mktemp("serviceaccount"), "driftd")


def _pod_env(shipped: Sandbox, sa: Path, account: str) -> dict[str, str]:
    token = _kubectl(shipped, "-n", "driftd", "create", "token", account, "--duration=1h").strip()
    assert token.count(".") == 2, "a JWT"
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(Path(shipped.kube_ca).read_bytes())
    (sa / "namespace").write_text("driftd")
    server = urlparse(shipped.kube_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "AWS_"))}
    env.update({
        "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(server.port or 443),
        "DRIFTD_SERVICEACCOUNT_DIR": str(sa),
        "HOME": str(sa.parent),  # no ~/.kube/config to fall back on
        "PYTHONPATH": str(ROOT),
    })
    env["_TOKEN"] = token  # for the leak checks below; not passed on
    return env


_MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-settings, namespace: {ns}}}
data: {{mode: blue}}
"""


@pytest.fixture(scope="module")
def envs(shipped: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A Git repository with an alert and an enforce environment, each in its own namespace, applied
    live by driftd's field manager (in sync), and a config using the in-cluster credentials."""
    tag = uuid.uuid4().hex[:6]
    ns = {"alert": f"ship-alert-{tag}", "enforce": f"ship-enforce-{tag}"}
    work = tmp_path_factory.mktemp("envs-work")
    for mode, n in ns.items():
        (work / mode).mkdir()
        (work / mode / "app.yaml").write_text(_MANIFESTS.format(ns=n))
        _kubectl(shipped, "create", "namespace", n)
        _kubectl(shipped, "apply", "--server-side", "--field-manager=driftd", "-f", str(work / mode / "app.yaml"))
    name = f"ship-{tag}"
    shipped.new_bare_repo(name)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "envs"], check=True)
    subprocess.run([*git, "push", "-q", shipped.git_repo_url(name), "main"], check=True, capture_output=True)
    state = tmp_path_factory.mktemp("state")
    cfg = tmp_path_factory.mktemp("cfg") / "driftd.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{state}"
listen = "127.0.0.1:{free_port()}"
log_format = "json"

[[clusters]]
name = "in-cluster"

[[repositories]]
name = "envs"
url = "{shipped.git_repo_url(name)}"

[[environments]]
name = "shop-alert"
repository = "envs"
branch = "main"
mode = "alert"
interval = "2s"
  [environments.kubernetes]
  cluster = "in-cluster"
  path = "alert"

[[environments]]
name = "shop-enforce"
repository = "envs"
branch = "main"
mode = "enforce"
interval = "2s"
  [environments.kubernetes]
  cluster = "in-cluster"
  path = "enforce"
""")
    return {"config": cfg, "ns": ns, "repo_url": shipped.git_repo_url(name), "state": state}


def _driftd(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    token = env["_TOKEN"]
    p = subprocess.run([*DRIFTD, *args], env={k: v for k, v in env.items() if k != "_TOKEN"},
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert token not in p.stdout, "the service-account token leaked to stdout"
    assert token not in p.stderr, "the service-account token leaked to stderr"
    return p


def _drift(report: dict[str, Any], env: str, kind: str, name: str) -> dict[str, Any]:
    (e,) = [e for e in report["environments"] if e["name"] == env]
    assert e["error"] is None, e["error"]
    found = [d for d in e["drifts"] if d["kind"] == kind and d["name"] == name]
    assert found, f"no drift on {kind}/{name} in {e}"
    return found[0]


def _replicas(sandbox: Sandbox, ns: str) -> int:
    return int(sandbox.kubectl_json("-n", ns, "get", "deployment", "web")["spec"]["replicas"])


def test_network_policy_and_api_token_mount_are_accepted_by_the_api_server(shipped: Sandbox) -> None:
    """The API server validated and stored the shipped NetworkPolicy and the Secret-backed token mount
    (a schema mistake in either would have failed `kubectl apply -k` above, or been pruned here)."""
    np = shipped.kubectl_json("-n", "driftd", "get", "networkpolicy", "driftd")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "driftd"}
    assert {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]} == {9717}
    dep = shipped.kubectl_json("-n", "driftd", "get", "deployment", "driftd")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["api-token"]["secret"]["secretName"] == "driftd-api-token"


def test_check_alert_environment_with_the_observe_role(envs: dict[str, Any], in_cluster: dict[str, str],
                                                      shipped: Sandbox) -> None:
    assert not _can(shipped, "create", "deployments.apps", envs["ns"]["alert"]), "observe role only"
    clean = _driftd(in_cluster, "check", "--config", str(envs["config"]), "--env", "shop-alert", "-o", "json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    _kubectl(shipped, "-n", envs["ns"]["alert"], "scale", "deployment", "web", "--replicas=5")
    p = _driftd(in_cluster, "check", "--config", str(envs["config"]), "--env", "shop-alert", "-o", "json")
    assert p.returncode == 1, p.stdout + p.stderr
    d = _drift(json.loads(p.stdout), "shop-alert", "Deployment", "web")
    assert d["drift"] == "modified"
    (ch,) = [c for c in d["changes"] if c["path"] == "/spec/replicas"]
    assert (ch["expected"], ch["actual"]) == (2, 5)
    assert _replicas(shipped, envs["ns"]["alert"]) == 5, "check changes nothing"


def test_enforce_revert_refused_by_the_observe_role_names_the_permission(
        envs: dict[str, Any], in_cluster: dict[str, str], shipped: Sandbox) -> None:
    ns = envs["ns"]["enforce"]
    _kubectl(shipped, "-n", ns, "scale", "deployment", "web", "--replicas=4")
    p = _driftd(in_cluster, "sync", "--config", str(envs["config"]), "--env", "shop-enforce", "-o", "json")
    report = json.loads(p.stdout)
    d = _drift(report, "shop-enforce", "Deployment", "web")
    assert d["action"] == "revert_failed", d
    reason = d.get("reason") or ""
    assert "enforce on modes.driftd.io" in reason, reason
    assert "driftd-enforce" in reason, reason
    assert p.returncode != 0
    assert _replicas(shipped, ns) == 4, "nothing was changed"


def test_enforce_revert_succeeds_with_the_enforce_role(envs: dict[str, Any], in_cluster: dict[str, str],
                                                       shipped: Sandbox) -> None:
    ns = envs["ns"]["enforce"]
    _kubectl(shipped, "-n", ns, "scale", "deployment", "web", "--replicas=6")
    _kubectl(shipped, "-n", ns, "delete", "configmap", "web-settings")
    _kubectl(shipped, "apply", "-k", str(ENFORCE))
    _wait(lambda: _can(shipped, "create", "configmaps", ns), "driftd-enforce binding in effect")
    try:
        p = _driftd(in_cluster, "sync", "--config", str(envs["config"]), "--env", "shop-enforce", "-o", "json")
        report = json.loads(p.stdout)
        assert _drift(report, "shop-enforce", "Deployment", "web")["action"] == "reverted", p.stdout
        cm = _drift(report, "shop-enforce", "ConfigMap", "web-settings")
        assert (cm["drift"], cm["action"]) == ("missing", "reverted")
        assert _replicas(shipped, ns) == 2
        data = shipped.kubectl_json("-n", ns, "get", "configmap", "web-settings")["data"]
        assert data == {"mode": "blue"}
        after = _driftd(in_cluster, "check", "--config", str(envs["config"]), "--env", "shop-enforce")
        assert after.returncode == 0, after.stdout + after.stderr
    finally:
        _kubectl(shipped, "delete", "clusterrolebinding", "driftd-enforce", "--ignore-not-found")
        _wait(lambda: not _can(shipped, "create", "configmaps", ns), "driftd-enforce binding removed")


def _http(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def test_daemon_in_cluster_checks_the_alert_environment(envs: dict[str, Any], in_cluster: dict[str, str],
                                                        shipped: Sandbox) -> None:
    """`driftd run` as the sidecar runs it: in-cluster credentials, /healthz then /readyz, and the
    alert environment's drift visible in the HTTP API."""
    if importlib.util.find_spec("driftd.daemon") is None:
        pytest.xfail("driftd/daemon.py (issue 6) is not in the tree yet")
    import tomli

    listen = tomli.loads(Path(envs["config"]).read_text())["daemon"]["listen"]
    base = f"http://{listen}"
    _kubectl(shipped, "-n", envs["ns"]["alert"], "scale", "deployment", "web", "--replicas=3")
    env = {k: v for k, v in in_cluster.items() if k != "_TOKEN"}
    log = Path(envs["config"]).parent / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*DRIFTD, "run", "--config", str(envs["config"])], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        _wait(lambda: _http(f"{base}/healthz")[0] == 200 or proc.poll() is not None, "healthz", 60)
        assert proc.poll() is None, log.read_text()[-3000:]
        _wait(lambda: _http(f"{base}/readyz")[0] == 200, "readyz", 60)
        # ready = every environment checked once, successfully or not: wait for the verdict itself
        seen: dict[str, Any] = {}

        def drifted() -> bool:
            status, body = _http(f"{base}/api/v1/environments/shop-alert")
            if status != 200:
                assert proc.poll() is None, log.read_text()[-3000:]
                return False
            e = json.loads(body)
            seen.update(e.get("environments", [e])[0] if "environments" in e else e)
            return seen["status"] == "drifted"

        try:
            _wait(drifted, "shop-alert drifted", 60)
        except TimeoutError:
            raise AssertionError(f"{seen}\n{log.read_text()[-3000:]}") from None
        drifts = [d for d in seen["drifts"] if d["kind"] == "Deployment" and d["name"] == "web"]
        assert drifts, seen
        assert drifts[0]["action"] == "reported"
        assert _replicas(shipped, envs["ns"]["alert"]) == 3, "alert mode changes nothing"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert in_cluster["_TOKEN"] not in log.read_text(), "the token leaked to the log"


def test_printed_permissions_suffice_to_check_an_alert_environment(
        envs: dict[str, Any], shipped: Sandbox, tmp_path: Path) -> None:
    """The ClusterRole `driftd permissions` prints for an alert environment, bound alone to a fresh
    ServiceAccount, is enough to check it (the SSA dry run needs patch: the role must say so)."""
    cfg = tmp_path / "alert-only.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{envs['state']}"
[[clusters]]
name = "in-cluster"
[[repositories]]
name = "envs"
url = "{envs['repo_url']}"
[[environments]]
name = "shop-alert"
repository = "envs"
branch = "main"
mode = "alert"
  [environments.kubernetes]
  cluster = "in-cluster"
  path = "alert"
""")
    out = subprocess.run([*DRIFTD, "permissions", "--config", str(cfg)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    role = json.loads(out.stdout)["kubernetes"]["in-cluster"]
    assert role["kind"] == "ClusterRole"
    role["metadata"] = {"name": "driftd-printed-test"}
    _kubectl(shipped, "apply", "-f", "-", input=json.dumps(role))
    _kubectl(shipped, "-n", "driftd", "create", "serviceaccount", "driftd-printed", check=False)
    _kubectl(shipped, "create", "clusterrolebinding", "driftd-printed-test", "--clusterrole=driftd-printed-test",
             "--serviceaccount=driftd:driftd-printed", check=False)
    try:
        _wait(lambda: shipped.kubectl("auth", "can-i", "list", "deployments.apps", "-n", envs["ns"]["alert"],
                                      "--as=system:serviceaccount:driftd:driftd-printed",
                                      check=False).stdout.strip() == "yes", "printed role bound")
        sa = tmp_path / "sa"
        sa.mkdir()
        env = _pod_env(shipped, sa, "driftd-printed")
        p = _driftd(env, "check", "--config", str(cfg), "-o", "json")
        assert p.returncode in (0, 1), p.stdout[-2000:] + p.stderr[-2000:]
        (e,) = json.loads(p.stdout)["environments"]
        assert e["error"] is None, e["error"]
    finally:
        _kubectl(shipped, "delete", "clusterrolebinding", "driftd-printed-test", "--ignore-not-found", check=False)
        _kubectl(shipped, "delete", "clusterrole", "driftd-printed-test", "--ignore-not-found", check=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_in_cluster_token_is_reread_when_the_kubelet_rotates_it(
        in_cluster: dict[str, str], shipped: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubelet rewrites the projected token file hourly: the client must pick up the new one
    without a restart (a stale token is a 401 once it expires)."""
    from driftd.config import ClusterSettings
    from driftd.targets.kubernetes.client import ApiError, connect

    sa = tmp_path / "sa"
    sa.mkdir()
    for name in ("ca.crt", "namespace"):
        (sa / name).write_bytes((Path(in_cluster["DRIFTD_SERVICEACCOUNT_DIR"]) / name).read_bytes())
    token_file = sa / "token"
    token_file.write_text(in_cluster["_TOKEN"])
    for k in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.setenv(k, in_cluster[k])
    monkeypatch.setenv("DRIFTD_SERVICEACCOUNT_DIR", str(sa))
    monkeypatch.delenv("KUBECONFIG", raising=False)

    def rotate(text: str, stamp: float) -> None:
        token_file.write_text(text)
        os.utime(token_file, (stamp, stamp))  # distinct mtimes even within one clock tick

    client = await connect(ClusterSettings(name="in-cluster"))
    try:
        ok = await client.request("GET", "/apis/apps/v1/deployments", verb="list", resource="deployments")
        assert ok["kind"] == "DeploymentList"
        rotate("not-a-valid-token", time.time() + 10)
        with pytest.raises(ApiError) as err:
            await client.request("GET", "/apis/apps/v1/deployments", verb="list", resource="deployments")
        assert err.value.status == 401
        fresh = _kubectl(shipped, "-n", "driftd", "create", "token", "driftd", "--duration=1h").strip()
        rotate(fresh, time.time() + 20)
        again = await client.request("GET", "/apis/apps/v1/deployments", verb="list", resource="deployments")
        assert again["kind"] == "DeploymentList"
    finally:
        await client.aclose()
