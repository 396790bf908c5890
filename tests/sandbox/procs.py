"""Detached process management for the sandbox: spawn, probe, stop.

Every server runs in its own session (process group), detached from whoever
started it, so `up` can exit and a pytest process never owns zombie children.
A process is identified by its pid *and* its start time (from /proc), so a
recycled pid is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Runs in a throw-away interpreter: starts the server in a new session with its
# output in a log file, prints its pid and exits, so the server is re-parented.
_LAUNCHER = r"""
import json, os, subprocess, sys
s = json.loads(sys.argv[1])
env = dict(os.environ)
env.update(s["env"])
with open(s["log"], "ab") as log:
    p = subprocess.Popen(s["argv"], cwd=s["cwd"], env=env, stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
print(p.pid, flush=True)
os._exit(0)
"""


class SandboxError(RuntimeError):
    """A sandbox server failed to start, stop or answer."""


@dataclass(frozen=True)
class Probe:
    """How to tell that a server is ready.

    kind "tcp": connect to port. kind "http": GET url and accept any status in
    ``ok`` (TLS with ``ca``/``cert``/``key`` when given).
    """

    kind: str
    url: str = ""
    port: int = 0
    ok: tuple[int, ...] = (200,)
    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class Spec:
    name: str
    argv: list[str]
    log: str
    probe: Probe
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Spec:
        p = dict(d["probe"])
        p["ok"] = tuple(p.get("ok", (200,)))
        return cls(
            name=d["name"],
            argv=list(d["argv"]),
            log=d["log"],
            probe=Probe(**p),
            cwd=d.get("cwd", "/"),
            env=dict(d.get("env", {})),
        )


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # start time in clock ticks since boot (field 22 of /proc/PID/stat)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def alive(proc: Proc) -> bool:
    st = _stat(proc.pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == proc.start


def spawn(spec: Spec) -> Proc:
    Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log, "ab") as log:
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start {' '.join(spec.argv)}\n".encode())
    payload = json.dumps({"argv": spec.argv, "cwd": spec.cwd, "env": spec.env, "log": spec.log})
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, payload], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SandboxError(f"cannot start {spec.name}: {out.stderr.strip()}")
    pid = int(out.stdout.strip())
    st = _stat(pid)
    if st is None:
        raise SandboxError(f"{spec.name} exited immediately; see {spec.log}:\n{log_tail(spec.log)}")
    return Proc(pid, st[1])


def _signal(proc: Proc, sig: signal.Signals) -> None:
    if not alive(proc):
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)  # the server and any children it forked (git daemon)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop(proc: Proc, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(proc) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(proc):
        _signal(proc, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
    if alive(proc):
        raise SandboxError(f"pid {proc.pid} survived SIGKILL")


def log_tail(path: str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def probe_once(probe: Probe, timeout: float = 2.0) -> bool:
    if probe.kind == "tcp":
        try:
            with socket.create_connection(("127.0.0.1", probe.port), timeout=timeout):
                return True
        except OSError:
            return False
    ctx: ssl.SSLContext | None = None
    if probe.url.startswith("https:"):
        ctx = ssl.create_default_context(cafile=probe.ca or None)
        if probe.cert:
            ctx.load_cert_chain(probe.cert, probe.key)
    try:
        with urllib.request.urlopen(probe.url, timeout=timeout, context=ctx) as r:
            return int(r.status) in probe.ok
    except urllib.error.HTTPError as e:
        return e.code in probe.ok
    except (OSError, ssl.SSLError):
        return False


def wait_ready(spec: Spec, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not alive(proc):
            raise SandboxError(f"{spec.name} died during startup; {spec.log}:\n{log_tail(spec.log)}")
        if probe_once(spec.probe):
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"{spec.name} not ready after {timeout:.0f}s; {spec.log}:\n{log_tail(spec.log)}")
        time.sleep(0.1)
