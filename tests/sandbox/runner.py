"""Start, inspect and stop the sandbox servers in a directory.

Layout of DIR: sandbox.json (public, see model.Sandbox), state.json (argv, probes and
pids of each server, used by restart helpers and `down`), logs/NAME.log, and one
subdirectory per server. Everything listens on 127.0.0.1 ports chosen at `up`;
restarts reuse them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from .certs import bcrypt_hash, make_kube_pki
from .model import SANDBOX_JSON, Sandbox
from .procs import Probe, Proc, SandboxError, Spec, alive, free_port, probe_once, spawn, stop, wait_ready

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-kube.sh"
STATE_JSON = "state.json"
# Start order; `down` goes in reverse.
ORDER = (
    "etcd",
    "kube-apiserver",
    "moto",
    "git-daemon",
    "git-http",
    "git-ssh",
    "registry",
    "registry-auth",
    "webhook",
    "alertmanager",
    "alertmanager2",
    "prometheus",
)
# Only these names under DIR are ever deleted (when a stopped sandbox is brought up again).
MANAGED = (
    SANDBOX_JSON, STATE_JSON, "logs", "pki", "etcd", "kube", "git", "git-http", "git-ssh", "registry", "registry-auth",
    "alertmanager", "alertmanager2", "prometheus", "alerts-received.jsonl",
)  # fmt: skip
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = "1s", "1s", "1h"
READY_TIMEOUT = {"kube-apiserver": 90.0, "etcd": 30.0}


class AlreadyRunning(SandboxError):
    pass


# -- state ------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class State:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.specs: dict[str, Spec] = {}
        self.procs: dict[str, Proc] = {}
        p = d / STATE_JSON
        if p.exists():
            raw = json.loads(p.read_text())
            self.specs = {k: Spec.from_json(v) for k, v in raw["specs"].items()}
            self.procs = {k: Proc(**v) for k, v in raw["procs"].items()}

    def save(self) -> None:
        _write_json(
            self.dir / STATE_JSON,
            {
                "specs": {k: v.to_json() for k, v in self.specs.items()},
                "procs": {k: {"pid": v.pid, "start": v.start} for k, v in self.procs.items()},
            },
        )
        sj = self.dir / SANDBOX_JSON
        if sj.exists():
            data = json.loads(sj.read_text())
            data["pids"] = self.pids()
            _write_json(sj, data)

    def pids(self) -> dict[str, int]:
        return {k: v.pid for k, v in self.procs.items()}

    def running(self) -> dict[str, Proc]:
        return {k: v for k, v in self.procs.items() if alive(v)}


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SandboxError(f"another sandbox command is working on {d}; try again") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- binaries -----------------------------------------------------------------------------


def kube_bin_dir() -> tuple[Path, float | None]:
    """Run build-kube.sh (cached; honours KUBEBUILDER_ASSETS). Returns (dir, build seconds if it built)."""
    t0 = time.monotonic()
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    took = time.monotonic() - t0
    if out.returncode != 0:
        raise SandboxError(f"{BUILD_SCRIPT} failed (exit {out.returncode})")
    d = Path(out.stdout.strip().splitlines()[-1])
    return d, (took if took > 20 else None)


def _which(*names: str) -> str:
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    raise SandboxError(
        f"{names[0]} not found; install the Debian packages docker-registry prometheus "
        "prometheus-alertmanager (see .ci/run)"
    )


# -- configuration -----------------------------------------------------------------------


def _specs(
    d: Path, kube_bin: Path, ports: dict[str, int], registry_htpasswd: Path, git_http_creds: Path
) -> dict[str, Spec]:
    logs = d / "logs"

    def log(name: str) -> str:
        return str(logs / f"{name}.log")

    def http(port: int, path: str, ok: tuple[int, ...] = (200,)) -> Probe:
        return Probe("http", url=f"http://127.0.0.1:{port}{path}", ok=ok)

    pki = d / "pki"
    specs: dict[str, Spec] = {}
    ep, epp = ports["etcd"], ports["etcd-peer"]
    specs["etcd"] = Spec(
        "etcd",
        [
            str(kube_bin / "etcd"),
            "--name=sandbox",
            f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ep}",
            f"--advertise-client-urls=http://127.0.0.1:{ep}",
            f"--listen-peer-urls=http://127.0.0.1:{epp}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{epp}",
            f"--initial-cluster=sandbox=http://127.0.0.1:{epp}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        log("etcd"),
        http(ep, "/health"),
    )
    kp = ports["kube"]
    specs["kube-apiserver"] = Spec(
        "kube-apiserver",
        [
            str(kube_bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ep}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={kp}",
            f"--cert-dir={d / 'kube' / 'certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-cluster-ip-range=10.0.0.0/16",  # 10,000+ Services fit (a /24 filled at ~250)
            "--max-requests-inflight=800",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",  # 127.0.0.1 is not a valid Endpoints IP
            "--profiling=false",
            "--v=0",
        ],
        log("kube-apiserver"),
        Probe(
            "http",
            url=f"https://127.0.0.1:{kp}/readyz",
            ca=str(pki / "ca.crt"),
            cert=str(pki / "admin.crt"),
            key=str(pki / "admin.key"),
        ),
    )
    specs["moto"] = Spec(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["moto"])],
        log("moto"),
        http(ports["moto"], "/moto-api/", ok=(200, 404)),
    )
    git_root = d / "git"
    specs["git-daemon"] = Spec(
        "git-daemon",
        [
            "git",
            "daemon",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={git_root}",
            "--listen=127.0.0.1",
            f"--port={ports['git']}",
            "--reuseaddr",
            "--informative-errors",
            str(git_root),
        ],  # fmt: skip
        log("git-daemon"),
        Probe("tcp", port=ports["git"]),
    )
    # Smart HTTP (git http-backend as CGI) behind basic auth; a request without the token gets 401.
    specs["git-http"] = Spec(
        "git-http",
        [sys.executable, str(HERE / "githttp.py"), str(ports["git-http"]), str(git_root), str(git_http_creds)],
        log("git-http"),
        http(ports["git-http"], "/", ok=(401,)),
    )
    # SSH (asyncssh, public key only) running git-upload-pack/receive-pack under git_root; keys from up().
    specs["git-ssh"] = Spec(
        "git-ssh",
        [sys.executable, str(HERE / "gitssh.py"), str(ports["git-ssh"]), str(git_root), str(d / "git-ssh")],
        log("git-ssh"),
        Probe("tcp", port=ports["git-ssh"]),
    )
    registry_bin = _which("docker-registry", "registry")
    for name, htpasswd in (("registry", None), ("registry-auth", registry_htpasswd)):
        rd = d / name
        rd.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(rd / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": f"127.0.0.1:{ports[name]}", "secret": os.urandom(16).hex()},
        }
        if htpasswd is not None:
            cfg["auth"] = {"htpasswd": {"realm": "driftd-sandbox", "path": str(htpasswd)}}
        (rd / "config.yml").write_text(yaml.safe_dump(cfg))
        specs[name] = Spec(
            name,
            [registry_bin, "serve", str(rd / "config.yml")],
            log(name),
            http(ports[name], "/v2/", ok=(200, 401)),
        )
    specs["webhook"] = Spec(
        "webhook",
        [sys.executable, str(HERE / "webhook.py"), str(ports["webhook"]), str(d / "alerts-received.jsonl")],
        log("webhook"),
        http(ports["webhook"], "/"),
    )
    am_bin = _which("prometheus-alertmanager", "alertmanager")
    for name in ("alertmanager", "alertmanager2"):
        ad = d / name
        ad.mkdir(parents=True, exist_ok=True)
        am_cfg = {
            "route": {
                "receiver": "webhook",
                "group_by": ["alertname"],
                "group_wait": GROUP_WAIT,
                "group_interval": GROUP_INTERVAL,
                "repeat_interval": REPEAT_INTERVAL,
            },
            "receivers": [
                {
                    "name": "webhook",
                    "webhook_configs": [{"url": f"http://127.0.0.1:{ports['webhook']}/{name}", "send_resolved": True}],
                }
            ],
        }
        (ad / "alertmanager.yml").write_text(yaml.safe_dump(am_cfg, sort_keys=False))
        port = ports[name]
        specs[name] = Spec(
            name,
            [
                am_bin,
                f"--config.file={ad / 'alertmanager.yml'}",
                f"--storage.path={ad / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url=http://127.0.0.1:{port}/",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            log(name),
            http(port, "/-/ready"),
        )
    pd = d / "prometheus"
    pd.mkdir(parents=True, exist_ok=True)
    pp = ports["prometheus"]
    prom_cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "alerting": {
            "alertmanagers": [
                {
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{ports['alertmanager']}", f"127.0.0.1:{ports['alertmanager2']}"]}
                    ]
                }
            ]
        },
        "rule_files": [],
        "scrape_configs": [{"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{pp}"]}]}],
    }
    (pd / "prometheus.yml").write_text(yaml.safe_dump(prom_cfg, sort_keys=False))
    specs["prometheus"] = Spec(
        "prometheus",
        [
            _which("prometheus"),
            f"--config.file={pd / 'prometheus.yml'}",
            f"--storage.tsdb.path={pd / 'data'}",
            f"--web.listen-address=127.0.0.1:{pp}",
            f"--web.external-url=http://127.0.0.1:{pp}/",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        log("prometheus"),
        http(pp, "/-/ready"),
    )
    return specs


def _write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key"),
                },
            }
        ],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "admin"}}],
        "current-context": "sandbox",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _kube_get(spec: Spec, path: str) -> Any:
    p = spec.probe
    ctx = ssl.create_default_context(cafile=p.ca)
    ctx.load_cert_chain(p.cert, p.key)
    base = p.url.rsplit("/", 1)[0]
    with urllib.request.urlopen(base + path, timeout=5, context=ctx) as r:
        return json.loads(r.read())


def _wait_kube_settled(spec: Spec, timeout: float = 30.0) -> None:
    """/readyz is up; also wait for the bootstrap `default` namespace."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _kube_get(spec, "/api/v1/namespaces/default")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SandboxError("namespace default never appeared") from None
            time.sleep(0.1)


# -- up / down / status --------------------------------------------------------------------


def up(directory: str | os.PathLike[str], log: Any = sys.stderr) -> Sandbox:
    d = Path(directory).resolve()
    with _locked(d):
        old = State(d)
        running = old.running()
        if running:
            raise AlreadyRunning(
                f"a sandbox is already running in {d} (pids {sorted(p.pid for p in running.values())}); "
                f"use it (DRIFTD_SANDBOX={d}) or stop it first: python -m tests.sandbox down {d}"
            )
        for name in MANAGED:
            p = d / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        kube_bin, built = kube_bin_dir()
        if built is not None:
            print(f"sandbox: built kube-apiserver + etcd in {built:.0f}s ({kube_bin})", file=log)
        t0 = time.monotonic()
        (d / "logs").mkdir()
        (d / "git").mkdir()
        ports = {
            n: free_port()
            for n in (
                "etcd", "etcd-peer", "kube", "moto", "git", "git-http", "git-ssh", "registry", "registry-auth",
                "webhook", "alertmanager", "alertmanager2", "prometheus",
            )
        }  # fmt: skip
        user, password = "driftd", os.urandom(12).hex()
        htpasswd = d / "registry-auth" / "htpasswd"
        htpasswd.parent.mkdir(parents=True)
        htpasswd.write_text(f"{user}:{bcrypt_hash(password)}\n")
        git_http_user, git_http_token = "driftd-git", os.urandom(16).hex()
        git_http_creds = d / "git-http" / "credentials"
        git_http_creds.parent.mkdir(parents=True)
        git_http_creds.touch(mode=0o600)
        git_http_creds.write_text(f"{git_http_user}:{git_http_token}\n")
        from .gitssh import make_keys  # imports asyncssh (0.4s): only when a sandbox starts

        git_ssh_key, git_ssh_known_hosts = make_keys(d / "git-ssh", ports["git-ssh"])
        state = State(d)
        state.specs = _specs(d, kube_bin, ports, htpasswd, git_http_creds)
        try:
            # Everything but the apiserver starts while the PKI is generated.
            others = [n for n in ORDER if n != "kube-apiserver"]
            for n in others:
                state.procs[n] = spawn(state.specs[n])
            state.save()
            pki_dir = d / "pki"
            make_kube_pki(pki_dir)
            kube = state.specs["kube-apiserver"]
            server = f"https://127.0.0.1:{ports['kube']}"
            kubeconfig = d / "kube" / "kubeconfig"
            _write_kubeconfig(kubeconfig, server, pki_dir)
            state.procs["kube-apiserver"] = spawn(kube)
            state.save()
            with ThreadPoolExecutor(max_workers=len(ORDER)) as pool:
                futs = [
                    pool.submit(wait_ready, state.specs[n], state.procs[n], READY_TIMEOUT.get(n, 30.0)) for n in ORDER
                ]
                for f in futs:
                    f.result()
            _wait_kube_settled(kube)
            version = _kube_get(kube, "/version")["gitVersion"]
        except BaseException:
            for n in reversed(ORDER):
                if n in state.procs:
                    stop(state.procs[n])
            state.procs = {}
            state.save()
            raise
        am1, am2 = ports["alertmanager"], ports["alertmanager2"]
        data = {
            "dir": str(d),
            "kubeconfig": str(kubeconfig),
            "kube_version": version,
            "kube_server": server,
            "kube_ca": str(pki_dir / "ca.crt"),
            "kube_client_cert": str(pki_dir / "admin.crt"),
            "kube_client_key": str(pki_dir / "admin.key"),
            "etcd": f"http://127.0.0.1:{ports['etcd']}",
            "aws_endpoint": f"http://127.0.0.1:{ports['moto']}",
            "aws_region": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "git_root": str(d / "git"),
            "git_url": f"git://127.0.0.1:{ports['git']}/",
            "git_http_url": f"http://127.0.0.1:{ports['git-http']}/",
            "git_http_user": git_http_user,
            "git_http_token": git_http_token,
            "git_ssh_url": f"ssh://driftd@127.0.0.1:{ports['git-ssh']}/",
            "git_ssh_key": str(git_ssh_key),
            "git_ssh_known_hosts": str(git_ssh_known_hosts),
            "registry": f"127.0.0.1:{ports['registry']}",
            "registry_auth": f"127.0.0.1:{ports['registry-auth']}",
            "registry_user": user,
            "registry_password": password,
            "alertmanager": f"http://127.0.0.1:{am1}",
            "alertmanager2": f"http://127.0.0.1:{am2}",
            "alertmanager_configs": [
                str(d / "alertmanager" / "alertmanager.yml"),
                str(d / "alertmanager2" / "alertmanager.yml"),
            ],
            "alertmanager_group_wait": GROUP_WAIT,
            "alertmanager_group_interval": GROUP_INTERVAL,
            "alertmanager_repeat_interval": REPEAT_INTERVAL,
            "webhook": f"http://127.0.0.1:{ports['webhook']}",
            "alerts_received": str(d / "alerts-received.jsonl"),
            "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
            "prometheus_config": str(d / "prometheus" / "prometheus.yml"),
            "pids": state.pids(),
        }
        _write_json(d / SANDBOX_JSON, data)
        print(f"sandbox: up in {time.monotonic() - t0:.1f}s; {d / SANDBOX_JSON} (kube {version})", file=log)
        return Sandbox.load(d)


def down(directory: str | os.PathLike[str], log: Any = sys.stderr) -> int:
    """Stop every server of the sandbox in DIR (SIGTERM, then SIGKILL). Leaves DIR. Returns count."""
    d = Path(directory).resolve()
    with _locked(d):
        state = State(d)
        running = state.running()
        for n in reversed(list(state.procs)):
            if n in running:
                stop(running[n])
        state.procs = {}
        if (d / STATE_JSON).exists():
            state.save()
        print(f"sandbox: stopped {len(running)} process(es) in {d}", file=log)
        return len(running)


def status(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """name -> {pid, alive, ready} for every server known in DIR."""
    d = Path(directory).resolve()
    state = State(d)
    out: dict[str, dict[str, Any]] = {}
    for n, spec in state.specs.items():
        proc = state.procs.get(n)
        is_alive = proc is not None and alive(proc)
        out[n] = {
            "pid": proc.pid if proc else None,
            "alive": is_alive,
            "ready": is_alive and probe_once(spec.probe),
            "log": spec.log,
        }
    return out


# -- failure injection ----------------------------------------------------------------------


def stop_component(sb: Sandbox, name: str) -> None:
    d = Path(sb.dir)
    with _locked(d):
        state = State(d)
        proc = state.procs.pop(name, None)
        if proc is not None:
            stop(proc)
        state.save()


def start_component(sb: Sandbox, name: str, timeout: float | None = None) -> None:
    """Start NAME again on its original port (no-op if running) and wait until it is ready."""
    d = Path(sb.dir)
    with _locked(d):
        state = State(d)
        proc = state.procs.get(name)
        if proc is not None and alive(proc):
            return
        spec = state.specs[name]
        state.procs[name] = proc = spawn(spec)
        state.save()
        wait_ready(spec, proc, timeout or READY_TIMEOUT.get(name, 30.0))
        if name == "kube-apiserver":
            _wait_kube_settled(spec)


def restart_kube_apiserver(sb: Sandbox) -> None:
    """Stop and start kube-apiserver (etcd keeps the data); returns when /readyz is ok."""
    stop_component(sb, "kube-apiserver")
    start_component(sb, "kube-apiserver")


def _am(which: int) -> str:
    if which not in (1, 2):
        raise ValueError("which must be 1 or 2")
    return "alertmanager" if which == 1 else "alertmanager2"


def stop_alertmanager(sb: Sandbox, which: int = 1) -> None:
    stop_component(sb, _am(which))


def start_alertmanager(sb: Sandbox, which: int = 1) -> None:
    start_component(sb, _am(which))


def stop_git(sb: Sandbox) -> None:
    stop_component(sb, "git-daemon")


def start_git(sb: Sandbox) -> None:
    start_component(sb, "git-daemon")


def reload_prometheus(sb: Sandbox) -> None:
    """POST /-/reload after rewriting sb.prometheus_config."""
    req = urllib.request.Request(f"{sb.prometheus}/-/reload", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            raise SandboxError(f"prometheus reload answered {r.status}")
