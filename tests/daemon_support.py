"""Helpers for the daemon tests: a Git repository of manifests, a config, `driftd run` as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


# A one-replica Deployment `web` as YAML text; tests replace IMAGE with the reference they run.
WEB_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: "IMAGE"}
"""


def deployment(name: str, replicas: int = 2, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}},
    }


def configmap(name: str, data: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": dict(data or {"k": "v"})}


class GitRepo:
    """A working clone of a sandbox bare repository; ``commit`` writes files and pushes a branch."""

    def __init__(self, sandbox: Sandbox, name: str, work: Path) -> None:
        sandbox.new_bare_repo(name)
        self.url = sandbox.git_repo_url(name)
        self.work = work
        work.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        self._git("config", "user.email", "t@example.com")
        self._git("config", "user.name", "t")
        self._git("remote", "add", "origin", self.url)

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.work, check=True, capture_output=True, text=True).stdout

    def commit(self, files: Mapping[str, Any], branch: str = "main", message: str = "update") -> str:
        cur = self._git("branch", "--show-current").strip()
        if cur != branch:
            existing = subprocess.run(["git", "rev-parse", "--verify", branch], cwd=self.work,
                                      capture_output=True).returncode == 0
            self._git("checkout", "-q", *([branch] if existing else ["-b", branch]))
        for path, content in files.items():
            p = self.work / path
            if content is None:
                if p.exists():
                    self._git("rm", "-q", path)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, (list, tuple)):
                p.write_text(yaml.safe_dump_all(list(content)))
            elif isinstance(content, dict):
                p.write_text(yaml.safe_dump(content))
            else:
                p.write_text(str(content))
            self._git("add", path)
        self._git("commit", "-q", "--allow-empty", "-m", message)
        self._git("push", "-q", "-f", "origin", branch)
        return self._git("rev-parse", "HEAD").strip()


    def delete_branch(self, branch: str) -> None:
        """Delete ``branch`` on the remote, as someone would by mistake (the local branch stays)."""
        self._git("push", "-q", "origin", "--delete", branch)

    def push_branch(self, branch: str) -> None:
        """Push the local ``branch`` (again) to the remote."""
        self._git("push", "-q", "-f", "origin", f"{branch}:{branch}")


def driftd_cli(config: Path, *args: str, timeout: float = 180) -> tuple[int, str, str]:
    """``driftd ARGS -c CONFIG`` as a subprocess, the way an operator runs it: (exit code, stdout, stderr)."""
    out = subprocess.run([sys.executable, "-m", "driftd", *args, "-c", str(config)], capture_output=True, text=True,
                         timeout=timeout, cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    return out.returncode, out.stdout, out.stderr


def driftd_json(config: Path, *args: str) -> tuple[int, Any]:
    """``driftd ARGS -c CONFIG -o json``: (exit code, the parsed report); output that is not JSON fails the
    test with the tail of both streams."""
    code, out, err = driftd_cli(config, *args, "-o", "json")
    try:
        return code, json.loads(out)
    except ValueError as e:
        raise AssertionError(f"driftd {args} exit {code}: {out[-2000:]} {err[-3000:]}") from e


def seed_in_sync(sb: Sandbox, *, repo: str, namespace: str, src: Path, manifest_file: str, manifest: str) -> None:
    """A new bare repository `repo` whose `main` holds kubernetes/<manifest_file>, and the same objects applied
    to a new `namespace` as driftd would (server-side, field manager driftd): an environment that starts in sync."""
    sb.new_bare_repo(repo)
    path = src / "kubernetes" / manifest_file
    path.parent.mkdir(parents=True)
    path.write_text(manifest)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@x"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "seed"],
                 ["push", "-q", sb.git_repo_url(repo), "HEAD:refs/heads/main"]):
        subprocess.run([*git, *argv], check=True, capture_output=True)
    sb.kubectl("create", "namespace", namespace)
    sb.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=driftd", "-f", str(path))


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):  # an inline table, e.g. aws.tag_filter
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _table(header: str, values: Mapping[str, Any]) -> list[str]:
    return [header, *(f"{k} = {toml_value(v)}" for k, v in values.items())]


def write_config(path: Path, sandbox: Sandbox, *, repo_url: str, state_dir: Path, port: int,
                 envs: list[dict[str, Any]], poll: str = "1s", alertmanager: bool | list[str] = False,
                 resend_interval: str | None = None, registries: list[dict[str, Any]] | None = None,
                 aws: bool = False) -> Path:
    """A config for the sandbox. ``alertmanager``: True for the sandbox's first Alertmanager, or a list of URLs.
    Each env dict holds its keys plus optional sub-tables: ``kubernetes``,
    ``aws`` (account "sandbox", moto), ``brakes``, ``write_back``, ``signatures``, and lists ``images`` and
    ``enforce_windows``."""
    lines = ["[daemon]", f"state_dir = {toml_value(str(state_dir))}", f"listen = \"127.0.0.1:{port}\"",
             "log_format = \"json\"", "log_level = \"info\"", "shutdown_timeout = \"15s\"", ""]
    urls = [sandbox.alertmanager] if alertmanager is True else list(alertmanager or [])
    if urls:
        resend = {"resend_interval": resend_interval} if resend_interval else {}
        lines += [*_table("[alertmanager]", {"urls": urls, **resend}), ""]
    lines += ["[[clusters]]", "name = \"sandbox\"", f"kubeconfig = {toml_value(sandbox.kubeconfig)}", "",
              "[[repositories]]", "name = \"repo\"", f"url = {toml_value(repo_url)}", f"poll_interval = \"{poll}\"", ""]
    if aws:
        lines += [*_table("[[aws_accounts]]", {"name": "sandbox", "region": sandbox.aws_region,
                                               "endpoint_url": sandbox.aws_endpoint}), ""]
    for reg in registries or []:
        lines += [*_table("[[registries]]", reg), ""]
    for env in envs:
        env = dict(env)
        subs = {k: env.pop(k) for k in ("kubernetes", "aws", "brakes", "write_back", "signatures") if k in env}
        lists = {k: env.pop(k, []) for k in ("images", "enforce_windows")}
        env.setdefault("repository", "repo")
        env.setdefault("branch", "main")
        lines += _table("[[environments]]", env)
        for k, v in subs.items():
            if v:
                lines += _table(f"[environments.{k}]", v)
        for k, items in lists.items():
            for item in items:
                lines += _table(f"[[environments.{k}]]", item)
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class DaemonProc:
    """`driftd run` as a real subprocess, its JSON log in a file, helpers to read its state."""

    def __init__(self, config: Path, state_dir: Path, port: int, log: Path) -> None:
        self.config, self.state_dir, self.port, self.log = config, state_dir, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProc:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("NOTIFY_SOCKET", None)
        self._logf = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "driftd", "run", "-c", str(self.config)],
                                     stdout=self._logf, stderr=self._logf, env=env, cwd=str(ROOT))
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._logf.close()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._logf.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def http(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def environments(self) -> dict[str, Any]:
        try:
            data = self.http("/api/v1/environments")
        except OSError:
            return {}
        envs = data.get("environments", data) if isinstance(data, dict) else data
        return {e["name"]: e for e in envs}

    def events(self, **where: str) -> list[dict[str, Any]]:
        db = self.state_dir / "driftd.db"
        if not db.exists():
            return []
        c = sqlite3.connect(db)
        c.row_factory = sqlite3.Row
        try:
            sql = "SELECT * FROM events"
            if where:
                sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
            return [dict(r) for r in c.execute(sql + " ORDER BY id", tuple(where.values()))]
        except sqlite3.OperationalError:
            return []
        finally:
            c.close()

    def last_event_id(self) -> int:
        """The newest event's id (0 before any): pass it to `events_after` to read only what follows."""
        return max((e["id"] for e in self.events()), default=0)

    def events_after(self, before: int, **where: str) -> list[dict[str, Any]]:
        return [e for e in self.events(**where) if e["id"] > before]

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_checked(self, *names: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: (e := self.environments()) and all(
            n in e and e[n].get("checked_at") and e[n]["status"] != "error" for n in names) and e,
            timeout, f"environments {names} checked; log tail:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(fn: Callable[[], Any], timeout: float = 30, what: str | Callable[[], str] = "condition") -> Any:
    """Poll ``fn`` until truthy; ``what`` (or what it returns, computed at the timeout) names the wait."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(0.2)
