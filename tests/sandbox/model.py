"""The `Sandbox` handle given to tests: addresses of the real servers plus small helpers."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SANDBOX_JSON = "sandbox.json"


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message shows stderr (pytest prints str(exc))."""

    def __str__(self) -> str:
        err = self.stderr if isinstance(self.stderr, str) else (self.stderr or b"").decode(errors="replace")
        return f"{super().__str__()}\nstderr: {err.strip()}"


@dataclass(frozen=True)
class Sandbox:
    """Everything written to DIR/sandbox.json. Paths are absolute strings."""

    dir: str
    # Kubernetes: real kube-apiserver + etcd. kubeconfig is admin (O=system:masters).
    kubeconfig: str
    kube_version: str
    kube_server: str
    kube_ca: str
    kube_client_cert: str
    kube_client_key: str
    etcd: str
    # AWS: moto server. Any credentials work; region us-east-1.
    aws_endpoint: str
    aws_region: str
    aws_access_key_id: str
    aws_secret_access_key: str
    # Git: git daemon with receive-pack enabled, serving the bare repos under git_root.
    git_root: str
    git_url: str
    # OCI registries (docker-registry 2.8): host:port, plain http.
    registry: str
    registry_auth: str
    registry_user: str
    registry_password: str
    # Two independent Alertmanagers (no clustering), both routing to the webhook receiver.
    alertmanager: str
    alertmanager2: str
    alertmanager_configs: list[str]
    alertmanager_group_wait: str
    alertmanager_group_interval: str
    alertmanager_repeat_interval: str
    webhook: str
    alerts_received: str
    # Prometheus with --web.enable-lifecycle: rewrite prometheus_config, then reload_prometheus().
    prometheus: str
    prometheus_config: str
    # pids at the time this object was loaded (restarts change them; see state.json).
    pids: dict[str, int]
    # Git over smart HTTP (git http-backend, same git_root) behind basic auth with this user/token;
    # push works too. "" in a sandbox started before git-http existed (tests skip; recreate it).
    git_http_url: str = ""
    git_http_user: str = ""
    git_http_token: str = ""
    # Git over SSH (asyncssh; only git-upload-pack/git-receive-pack, same git_root): the one
    # authorized client key (ed25519, mode 0600) and a known_hosts holding the server's host key.
    # "" in a sandbox started before git-ssh existed (tests skip; recreate it).
    git_ssh_url: str = ""
    git_ssh_key: str = ""
    git_ssh_known_hosts: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Sandbox:
        """Load from a sandbox directory or its sandbox.json."""
        p = Path(path)
        if p.is_dir():
            p = p / SANDBOX_JSON
        data: dict[str, Any] = json.loads(p.read_text())
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        missing = required - data.keys()
        if missing:
            raise ValueError(f"{p} lacks {sorted(missing)}; recreate the sandbox")
        return cls(**{k: v for k, v in data.items() if k in names})

    # -- environment ------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Variables that point kubectl, boto3/aioboto3 and AWS CLIs at the sandbox."""
        return {
            "KUBECONFIG": self.kubeconfig,
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_DEFAULT_REGION": self.aws_region,
            "AWS_REGION": self.aws_region,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
        }

    # -- Kubernetes -------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as cluster admin (or with ``kubeconfig``); raises CommandError if check."""
        argv = ["kubectl", "--kubeconfig", kubeconfig or self.kubeconfig, *args]
        out = subprocess.run(argv, input=input, capture_output=True, text=True, check=False, timeout=120)
        if check and out.returncode != 0:
            raise CommandError(out.returncode, argv, out.stdout, out.stderr)
        return out

    def kubectl_json(self, *args: str) -> Any:
        """kubectl ... -o json, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    # -- AWS --------------------------------------------------------------------------

    def boto3_client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for moto (fake credentials, us-east-1)."""
        import boto3

        params: dict[str, Any] = {
            "endpoint_url": self.aws_endpoint,
            "region_name": self.aws_region,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
        }
        params.update(kwargs)
        return boto3.client(service, **params)

    # -- Git --------------------------------------------------------------------------

    def new_bare_repo(self, name: str) -> Path:
        """Create git_root/NAME as a bare repo (default branch main); its URL is git_repo_url(NAME)."""
        path = Path(self.git_root) / name
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)],
            check=True,
            capture_output=True,
        )
        return path

    def git_repo_url(self, name: str) -> str:
        return f"{self.git_url}{name}"

    def git_http_repo_url(self, name: str, *, with_credentials: bool = False) -> str:
        """http:// URL of git_root/NAME; with_credentials embeds user:token (for the git CLI only)."""
        if not self.git_http_url:
            raise RuntimeError(f"the sandbox in {self.dir} predates git-http; recreate it")
        if not with_credentials:
            return f"{self.git_http_url}{name}"
        scheme, rest = self.git_http_url.split("://", 1)
        return f"{scheme}://{self.git_http_user}:{self.git_http_token}@{rest}{name}"

    def git_ssh_repo_url(self, name: str) -> str:
        """ssh:// URL of git_root/NAME (authenticate with git_ssh_key, verify with git_ssh_known_hosts)."""
        if not self.git_ssh_url:
            raise RuntimeError(f"the sandbox in {self.dir} predates git-ssh; recreate it")
        return f"{self.git_ssh_url}{name}"

    def git_ssh_command(self, key: str | None = None, known_hosts: str | None = None) -> str:
        """A GIT_SSH_COMMAND for the git CLI (push/clone over git_ssh_url), strict host checking."""
        return shlex.join([
            "ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key or self.git_ssh_key,
            "-o", f"UserKnownHostsFile={known_hosts or self.git_ssh_known_hosts}", "-o", "StrictHostKeyChecking=yes",
        ])  # fmt: skip

    # -- Registry ---------------------------------------------------------------------

    @property
    def registry_creds(self) -> tuple[str, str]:
        return (self.registry_user, self.registry_password)

    def push_image(
        self,
        repo: str,
        tag: str,
        files: dict[str, bytes] | None = None,
        *,
        auth: bool = False,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Push a one-layer OCI image to `registry` (or `registry_auth` if auth); returns its digest."""
        from .oci import push_image

        if auth:
            return push_image(self.registry_auth, repo, tag, files, self.registry_creds, labels)
        return push_image(self.registry, repo, tag, files, None, labels)

    # -- Alerting ---------------------------------------------------------------------

    def alerts(self) -> list[dict[str, Any]]:
        """Every notification body the webhook received so far (both Alertmanagers)."""
        p = Path(self.alerts_received)
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def wait_for_alert(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        """Block until a received notification satisfies predicate; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for body in self.alerts():
                if predicate(body):
                    return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching notification in {self.alerts_received} after {timeout}s")
            time.sleep(0.2)
