"""The container image, built from the Dockerfile with podman (scripts/build-image.sh, cached in
~/.cache/driftd-image) and run against the sandbox the way the sidecar runs it: read-only root filesystem,
uid 10001, every capability dropped, no new privileges, the config and a kubeconfig mounted read-only,
the state directory a writable mount.

`make test` builds the image before pytest (`make image`); the fixture below calls the same script, which
returns at once when the image is current."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon_support import ROOT, GitRepo, configmap, deployment, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

CACHE = Path(os.environ.get("DRIFTD_IMAGE_CACHE") or
             Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driftd-image")
UID = 10001


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CACHE / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(CACHE / "storage.conf")}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(), timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def image() -> str:
    p = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")], capture_output=True, text=True,
                       timeout=3600)
    assert p.returncode == 0, f"image build failed:\n{p.stderr[-5000:]}"
    return p.stdout.strip().splitlines()[-1]


def sidecar_args(image: str, mounts: dict[Path, str], state: Path, *extra: str) -> list[str]:
    """`podman run` as the shipped sidecar manifests run the container (deploy/ securityContext)."""
    args = ["run", "--rm", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
            f"--user={UID}:{UID}", "--network=host", "--no-healthcheck", f"--volume={state}:/var/lib/driftd"]
    args += [f"--volume={src}:{dst}:ro" for src, dst in mounts.items()]
    return [*args, *extra, image]


def test_image_is_small_unprivileged_and_shell_free(image: str) -> None:
    cfg = json.loads(podman("image", "inspect", image).stdout)[0]
    assert cfg["Config"]["User"] == f"{UID}:{UID}"
    assert cfg["Config"]["Entrypoint"] == ["driftd", "run"]
    assert cfg["Config"]["StopSignal"] == "SIGTERM"
    assert cfg["Healthcheck"]["Test"][:3] == ["CMD", "python", "-c"], "the HEALTHCHECK survives (docker format)"
    size_mb = cfg["Size"] / 1e6
    probe = ("import json, os, shutil, pwd, ssl, zoneinfo, yaml; "
             "print(json.dumps({'which': {x: shutil.which(x) for x in ('sh', 'bash', 'dash', 'busybox', 'pip', "
             "'pip3', 'gcc', 'cc', 'make', 'apt', 'apt-get', 'perl')}, 'user': pwd.getpwuid(os.getuid()).pw_name, "
             "'libyaml': yaml.__with_libyaml__, 'ssl': ssl.OPENSSL_VERSION, "
             "'tz': str(zoneinfo.ZoneInfo('Europe/Berlin')), "
             "'packages': open('/usr/share/driftd-base/packages').read().split(), "
             "'state_owner': os.stat('/var/lib/driftd').st_uid, "
             "'cafile': os.path.getsize('/etc/ssl/certs/ca-certificates.crt')}))")
    out = json.loads(podman("run", "--rm", "--read-only", "--cap-drop=ALL", "--no-healthcheck",
                            "--entrypoint=python", image, "-c", probe).stdout)
    assert out["which"] == {k: None for k in out["which"]}, f"tools in the image: {out['which']}"
    assert out["user"] == "driftd"
    assert out["libyaml"] is True
    assert out["tz"] == "Europe/Berlin"
    assert out["state_owner"] == UID
    assert out["cafile"] > 100_000
    sh = podman("run", "--rm", "--no-healthcheck", "--entrypoint=/bin/sh", image, "-c", "true", check=False)
    assert sh.returncode != 0, "no shell in the image"
    print(f"\nimage {image}: {size_mb:.0f} MB, {len(out['packages'])} Debian packages in the base "
          f"({' '.join(out['packages'])}), {out['ssl']}")
    assert len(out["packages"]) < 60
    assert size_mb < 250


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def sidecar_env(sandbox: Sandbox, tmp_path: Path) -> Iterator[dict[str, object]]:
    """A namespace in sync with a Git repository, the config and a flattened kubeconfig for the container."""
    tag = uuid.uuid4().hex[:6]
    ns = f"img-{tag}"
    docs = [deployment("web", 2), configmap("settings")]
    sandbox.kubectl("create", "namespace", ns)
    sandbox.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    git = GitRepo(sandbox, f"img-{tag}.git", tmp_path / "work")
    git.commit({"k8s/app.yaml": docs})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(sandbox.kubectl("config", "view", "--flatten", "--minify").stdout)
    kubeconfig.chmod(0o644)
    port = 9717 if _port_free(9717) else free_port()  # the HEALTHCHECK's port, unless taken on this host
    envs = [{"name": "k8s", "mode": "alert", "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"}}]
    config = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=Path("/var/lib/driftd"),
                          port=port, envs=envs)
    config.write_text(config.read_text().replace(sandbox.kubeconfig, "/etc/driftd/kubeconfig"))
    config.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, UID, UID)
    mounts = {config: "/etc/driftd/driftd.toml", kubeconfig: "/etc/driftd/kubeconfig"}
    try:
        yield {"ns": ns, "port": port, "mounts": mounts, "state": state}
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_check_in_the_container_exits_0_in_sync_and_1_after_a_kubectl_change(
        image: str, sandbox: Sandbox, sidecar_env: dict[str, object]) -> None:
    e = sidecar_env
    args = sidecar_args(image, e["mounts"], e["state"], "--entrypoint=driftd")  # type: ignore[arg-type]
    check = [*args, "check", "--config", "/etc/driftd/driftd.toml", "-o", "json"]
    p = podman(*check, check=False)
    assert p.returncode == 0, f"in sync: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    (env,) = json.loads(p.stdout)["environments"]
    assert (env["status"], env["resources"]) == ("in_sync", 2)
    sandbox.kubectl("scale", "deployment", "web", "-n", str(e["ns"]), "--replicas=5")
    p = podman(*check, check=False)
    assert p.returncode == 1, f"drifted: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    (env,) = json.loads(p.stdout)["environments"]
    assert env["status"] == "drifted"
    assert [(d["kind"], d["name"]) for d in env["drifts"]] == [("Deployment", "web")]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except OSError as e:
        code = getattr(e, "code", None)
        return (code or 0), ""


def test_run_in_the_container_becomes_ready_serves_probes_and_stops_on_sigterm(
        image: str, sidecar_env: dict[str, object]) -> None:
    e = sidecar_env
    name = f"driftd-img-{uuid.uuid4().hex[:6]}"
    args = sidecar_args(image, e["mounts"], e["state"], f"--name={name}", "--detach")  # type: ignore[arg-type]
    args.remove("--rm")  # keep the container after it exits, to read its exit code and logs
    podman(*args)
    base = f"http://127.0.0.1:{e['port']}"
    try:
        deadline = time.monotonic() + 120
        ready = (0, "")
        while time.monotonic() < deadline:
            ready = _get(f"{base}/readyz")
            if ready[0] == 200:
                break
            assert json.loads(podman("inspect", name).stdout)[0]["State"]["Running"], \
                podman("logs", name, check=False).stderr[-3000:]
            time.sleep(0.5)
        assert ready[0] == 200, f"not ready within 120 s: {ready}\n{podman('logs', name, check=False).stderr[-3000:]}"
        assert _get(f"{base}/healthz")[0] == 200
        code, metrics = _get(f"{base}/metrics")
        assert code == 200
        assert "driftd_" in metrics
        # the image's own HEALTHCHECK command, run inside the container (exec form, no shell)
        hc = json.loads(podman("image", "inspect", image).stdout)[0]["Healthcheck"]["Test"]
        assert hc[0] == "CMD"
        if e["port"] != 9717:  # the host's 9717 was taken: the same probe at the port the test listens on
            hc = [a.replace(":9717/", f":{e['port']}/") for a in hc]
        probe = podman("exec", name, *hc[1:], check=False)
        assert probe.returncode == 0, probe.stderr
        t0 = time.monotonic()
        podman("kill", f"--signal={signal.SIGTERM.name}", name)
        podman("wait", name, timeout=60)
        stopped_in = time.monotonic() - t0
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = podman("logs", name, check=False)
        assert state["ExitCode"] == 0, f"exit {state['ExitCode']}\n{logs.stderr[-3000:]}"
        assert stopped_in < 30
        print(f"\nsidecar container: ready, probes answered, SIGTERM -> exit 0 in {stopped_in:.1f} s")
    finally:
        podman("rm", "--force", name, check=False)


def test_build_is_cached(image: str) -> None:
    """A second build with nothing changed reuses every layer (CI time)."""
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    took = time.monotonic() - t0
    assert p.stdout.strip().splitlines()[-1] == image
    assert "mmdebstrap" not in p.stderr  # the bases came from the cache
    print(f"\ncached rebuild: {took:.1f} s")

