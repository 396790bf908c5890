"""`driftd run` as a subprocess against the sandbox: a kubectl change reaches Alertmanager's webhook
(firing, then resolved when put back), the HTTP API serves it, and systemd hears READY/RELOADING/STOPPING."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import seed_in_sync, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  LOG_LEVEL: info
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
stringData:
  password: in-git-value
"""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _wait(what: str, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


class Daemon:
    def __init__(self, sb: Sandbox, tmp: Path) -> None:
        rid = uuid.uuid4().hex[:6]
        self.sb, self.env_name, self.ns = sb, f"e2e-{rid}", f"alert-e2e-{rid}"
        repo = f"alert-e2e-{rid}"
        seed_in_sync(sb, repo=repo, namespace=self.ns, src=tmp / "src", manifest_file="app.yaml", manifest=CONFIGMAP)
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "driftd.toml"
        write_config(self.config, sb, repo_url=sb.git_repo_url(repo), state_dir=tmp / "state", port=self.port,
                     poll="5s", alertmanager=[sb.alertmanager, sb.alertmanager2], resend_interval="20s",
                     envs=[{"name": self.env_name, "mode": "alert", "severity": "critical", "interval": "30s",
                            "kubernetes": {"cluster": "sandbox", "namespace": self.ns}}])
        self.notify_path = str(tmp / "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        self.log = tmp / "driftd.log"
        self._logf = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "driftd", "run", "--config", str(self.config)],
            stdout=self._logf, stderr=subprocess.STDOUT,
            env={**os.environ, **sb.env(), "NOTIFY_SOCKET": self.notify_path})

    def recv_notify(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def alerts(self, status: str, **labels: str) -> list[dict[str, Any]]:
        return [a for b in self.sb.alerts() for a in b.get("alerts", [])
                if a["labels"].get("environment") == self.env_name and a["status"] == status
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        self._logf.close()
        self.sb.kubectl("delete", "namespace", self.ns, "--wait=false", check=False)
        return self.proc.returncode


@pytest.fixture
def daemon(sandbox: Sandbox, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(sandbox, tmp_path)
    try:
        _wait("driftd ready", lambda: d.proc.poll() is None and _get(d.api + "/readyz")[0] == 200, 90)
        yield d
    finally:
        d.stop()
        if os.environ.get("DRIFTD_E2E_LOG"):
            print(d.log.read_text())


@pytest.mark.slow
def test_kubectl_change_alerts_then_resolves(daemon: Daemon) -> None:
    d = daemon
    assert _get(d.api + "/healthz")[0] == 200
    d.sb.kubectl("-n", d.ns, "patch", "configmap/app-config", "--type=merge", "-p", '{"data":{"LOG_LEVEL":"debug"}}')
    d.sb.kubectl("-n", d.ns, "patch", "secret/app-secret", "--type=merge", "-p",
                 '{"stringData":{"password":"typed-by-hand-42"}}')
    firing = _wait("firing at the webhook", lambda: len(d.alerts("firing", alertname="DriftDetected")) >= 4 and
                   d.alerts("firing", alertname="DriftDetected"), 60)  # two objects x two Alertmanagers
    cm = next(a for a in firing if a["labels"]["name"] == "app-config")
    assert cm["labels"]["severity"] == "critical"
    assert cm["labels"]["kind"] == "ConfigMap"
    assert cm["labels"]["namespace"] == d.ns
    assert cm["annotations"]["changed_by"] == "kubectl-patch"
    assert "/data/LOG_LEVEL" in cm["annotations"]["description"]
    assert "debug" in cm["annotations"]["description"]
    assert {a["labels"]["name"] for a in firing} == {"app-config", "app-secret"}
    notifications = json.dumps(d.sb.alerts())
    assert "typed-by-hand-42" not in notifications  # the Secret's value never reaches an alert
    assert "dHlwZWQtYnktaGFuZC00Mg" not in notifications  # nor its base64
    # generatorURL opens the object in driftd's API
    code, body = _get(cm["generatorURL"])
    assert code == 200
    assert json.loads(body)["drift"]["name"] == "app-config"
    code, body = _get(d.api + f"/api/v1/environments/{d.env_name}")
    assert code == 200
    assert json.loads(body)["status"] == "drifted"
    assert "typed-by-hand-42" not in body
    _, metrics = _get(d.api + "/metrics")
    assert f'driftd_environment_info{{environment="{d.env_name}",mode="alert",status="drifted"}} 1.0' in metrics
    # put it back: resolved, with the same startsAt
    d.sb.kubectl("-n", d.ns, "patch", "configmap/app-config", "--type=merge", "-p", '{"data":{"LOG_LEVEL":"info"}}')
    resolved = _wait("resolved at the webhook", lambda: d.alerts("resolved", name="app-config"), 60)
    assert resolved[0]["startsAt"] == cm["startsAt"]


@pytest.mark.slow
def test_systemd_notify_from_the_daemon(daemon: Daemon) -> None:
    d = daemon
    msgs = _wait("READY=1", lambda: any("READY=1" in m for m in d.recv_notify()) and d.messages, 30)
    ready = next(m for m in msgs if "READY=1" in m)
    assert "STATUS=1 environment: " in ready
    d.proc.send_signal(signal.SIGHUP)
    _wait("RELOADING=1", lambda: any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in d.recv_notify()), 30)
    assert d.proc.poll() is None
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert any("STOPPING=1" in m for m in d.recv_notify())
