"""The settings driftd runs with: frozen dataclasses, one per TOML table.

Each field is a TOML key of the same name with the field's default, unless its metadata says
it is ``derived`` (then the value says where it comes from): ``driftd.config.parse`` derives the
allowed keys and every default from these fields, so a default is written once, here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import Mode, Severity

DEFAULT_HUMAN_MANAGERS = ("kubectl", "kubectl-*", "k9s", "kubernetes-dashboard*", "dashboard*", "Mozilla", "lens*")


def derived(where: str) -> dict[str, Any]:
    """Field metadata: not a TOML key of this name; ``where`` says what sets it."""
    return {"derived": where}


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: Path = Path("/var/lib/driftd")
    listen: str = "127.0.0.1:9717"
    log_format: str = "auto"  # auto | json | text
    log_level: str = "info"
    retention: float = 90 * 86400.0  # audit events and resolved drifts older than this are pruned
    shutdown_timeout: float = 20.0
    git_concurrency: int = 4
    api_token_file: Path | None = None  # bearer token required by the API (and every page but probes/metrics)
    secret_name_patterns: tuple[str, ...] = ()  # regexes added to driftd.secrets' defaults for secret-looking names
    # YAML nodes (aliases expanded) one environment's tree may parse: bounds CPU and memory per tree
    # (sources.yamlsafe.Limits; ~2 s of CPU at the default); a tree beyond it is refused, never half-read.
    max_tree_nodes: int = 500_000

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class AlertmanagerSettings:
    urls: tuple[str, ...] = ()
    resend_interval: float = 60.0
    error_grace: float = 120.0  # an environment must be in error this long before DriftdEnvironmentError fires
    timeout: float = 10.0
    external_url: str = ""  # base of generatorURL; defaults to http://<daemon.listen>
    username: str | None = None  # basic auth to Alertmanager, with password_file
    password_file: Path | None = None
    bearer_token_file: Path | None = None  # or a bearer token (Authorization: Bearer)


@dataclass(frozen=True)
class ClusterSettings:
    name: str
    kubeconfig: Path | None = None
    context: str | None = None
    concurrency: int = 8  # in-flight requests to this API server


@dataclass(frozen=True)
class AwsAccountSettings:
    name: str
    region: str
    profile: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None
    web_identity_token_file: Path | None = None
    concurrency: int = 8
    cloudtrail: bool = True  # attribute changes with CloudTrail LookupEvents where permitted


@dataclass(frozen=True)
class RepositorySettings:
    name: str
    url: str
    poll_interval: float = 30.0
    timeout: float = 60.0
    token_file: Path | None = None
    username: str | None = None  # for basic auth with token_file as the password
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    webhook_secret_file: Path | None = None  # the shared secret of push webhooks (/hooks/git)


@dataclass(frozen=True)
class RegistrySettings:
    """Credentials and limits for one image registry host."""

    host: str
    username: str | None = None
    password_file: Path | None = None
    docker_config: Path | None = None  # a docker config.json with "auths"
    insecure: bool = False  # plain HTTP
    concurrency: int = 4
    aws_account: str | None = None  # ECR: read through this account's API


@dataclass(frozen=True)
class KubernetesEnvSettings:
    cluster: str
    path: str = "kubernetes"
    namespace: str = "default"
    prune: bool = False
    prune_max_fraction: float = 0.25
    prune_kinds: tuple[str, ...] = ()  # Namespace, CustomResourceDefinition, PersistentVolumeClaim: opt in to pruning
    watch_namespaces: tuple[str, ...] = ()
    human_managers: tuple[str, ...] = DEFAULT_HUMAN_MANAGERS
    resync_interval: float = 600.0
    allow_remote_bases: bool = False  # let kustomize fetch remote bases (https://, github.com/...) itself


@dataclass(frozen=True)
class AwsEnvSettings:
    account: str
    path: str = "aws"
    parameters: Mapping[str, str] = field(default_factory=dict)
    tag_filter: Mapping[str, str] = field(default_factory=dict)  # scope for unmanaged resources
    unmanaged: bool = True
    baselines: bool = True  # baseline security-relevant properties templates leave out (drift kind undeclared)


@dataclass(frozen=True)
class IgnoreRule:
    paths: tuple[str, ...]
    kind: str = "*"
    name: str = "*"
    namespace: str = "*"
    target: str = "*"

    def matches(self, kind: str, name: str, namespace: str) -> bool:
        return (
            fnmatch.fnmatchcase(kind, self.kind)
            and fnmatch.fnmatchcase(name, self.name)
            and fnmatch.fnmatchcase(namespace, self.namespace)
        )


@dataclass(frozen=True)
class EnforceWindow:
    schedule: str  # five-field cron expression: when the window opens
    duration: float
    timezone: str = "UTC"


@dataclass(frozen=True)
class BrakeSettings:
    storm_fraction: float = 0.5  # hold enforcement when more than this fraction drifts at once
    storm_min_objects: int = 5  # ... and at least this many objects drift
    fight_max_reverts: int = 3  # an object reverted more than this often within fight_window is left alone
    fight_window: float = 600.0
    max_reverts_per_cycle: int = 50


@dataclass(frozen=True)
class ImagePolicySettings:
    name: str
    image: str  # registry/repository, Docker Hub names allowed
    policy: str = field(metadata=derived("which of semver/alphabetical/numerical is set"))
    range: str = field(default="", metadata=derived("the value of semver"))
    order: str = "asc"  # alphabetical / numerical: asc picks the highest
    pattern: str = ""  # regex; a named group (?P<key>...) or the first group is the sort key
    exclude: tuple[str, ...] = ("*.sig", "*.att", "*.sbom")
    action: str = "report"  # report | write-back


@dataclass(frozen=True)
class WriteBackSettings:
    author: str = "driftd <driftd@localhost>"
    message: str = "driftd: update images\n\n{changes}"


@dataclass(frozen=True)
class SignatureSettings:
    """``[environments.signatures]``: the keys whose commit signatures this environment trusts."""

    trusted_key_files: tuple[Path, ...]  # OpenPGP public keys, SSH public keys or allowed-signers files


@dataclass(frozen=True)
class EnvironmentSettings:
    name: str
    repository: str
    branch: str
    mode: Mode = Mode.ALERT
    interval: float = 60.0
    severity: Severity = Severity.WARNING
    dry_run: bool = False
    kubernetes: KubernetesEnvSettings | None = None
    aws: AwsEnvSettings | None = None
    ignore: tuple[IgnoreRule, ...] = ()
    enforce_windows: tuple[EnforceWindow, ...] = ()
    brakes: BrakeSettings = BrakeSettings()
    images: tuple[ImagePolicySettings, ...] = ()
    write_back: WriteBackSettings = WriteBackSettings()
    sops_age_key_file: Path | None = None  # age identity decrypting this environment's SOPS files
    signatures: SignatureSettings | None = None  # set: act only on commits signed by a trusted key


@dataclass(frozen=True)
class CoordinationSettings:
    """``[coordination]``: replicas sharing the environments through Leases on one cluster."""

    cluster: str  # a [[clusters]] name: where the Leases live
    namespace: str
    identity: str = ""  # this replica's name, unique in the group; "" -> $DRIFTD_REPLICA or the hostname
    group: str = "driftd"  # replicas with the same group share the environments
    lease_duration: float = 15.0

    @property
    def renew_interval(self) -> float:
        """A lease is renewed three times per duration: two renewals may fail before it is lost."""
        return self.lease_duration / 3

    @property
    def poll_interval(self) -> float:
        """How often the leases are listed: a dead replica is noticed within duration + this."""
        return min(2.0, self.lease_duration / 5)


@dataclass(frozen=True)
class Config:
    path: Path = field(metadata=derived("the file given with --config"))
    daemon: DaemonSettings
    alertmanager: AlertmanagerSettings
    clusters: Mapping[str, ClusterSettings]
    aws_accounts: Mapping[str, AwsAccountSettings]
    repositories: Mapping[str, RepositorySettings]
    registries: Mapping[str, RegistrySettings]
    environments: tuple[EnvironmentSettings, ...]
    coordination: CoordinationSettings | None = None  # None: this one replica acts on every environment

    def environment(self, name: str) -> EnvironmentSettings:
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)
