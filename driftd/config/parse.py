"""TOML -> the settings dataclasses of ``driftd.config.settings``.

Every problem is collected (not just the first) and reported with the file and the key path
(``environments[2].kubernetes.cluster``), what was expected and what was found. Secrets are only
ever referenced through ``*_file`` keys. The allowed keys of each table and their defaults come
from the dataclass fields (``toml_keys``, ``defaults``), so adding a setting is adding a field.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import tomli

from ..errors import ConfigError, ConfigErrors
from ..model import Mode, Severity
from ..names import namespace_problem
from ..semver import parse_range
from .settings import (
    AlertmanagerSettings,
    AwsAccountSettings,
    AwsEnvSettings,
    BrakeSettings,
    ClusterSettings,
    Config,
    CoordinationSettings,
    DaemonSettings,
    EnforceWindow,
    EnvironmentSettings,
    IgnoreRule,
    ImagePolicySettings,
    KubernetesEnvSettings,
    RegistrySettings,
    RepositorySettings,
    SignatureSettings,
    WriteBackSettings,
)

DEFAULT_CONFIG_PATH = "/etc/driftd/driftd.toml"

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# [[environments.images]]: which policy is chosen by which key (the value is the policy's argument).
IMAGE_POLICY_KEYS = ("semver", "alphabetical", "numerical")


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0 seconds. Raises ValueError with a hint."""
    s = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or 7d, found {text!r}")
    return total


def toml_keys(cls: type) -> frozenset[str]:
    """The keys a TOML table read into ``cls`` accepts: its fields that are not ``derived``, plus the keys
    that select a derived field (images: semver/alphabetical/numerical)."""
    own = frozenset(f.name for f in dataclasses.fields(cls) if "derived" not in f.metadata)
    return own | frozenset(IMAGE_POLICY_KEYS) if cls is ImagePolicySettings else own


def defaults(cls: type) -> Any:
    """The dataclass defaults of ``cls`` as attributes (``defaults(EnvironmentSettings).mode``); a
    required field has none."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return SimpleNamespace(**out)


# The TOML table each settings dataclass is read from (the README's configuration reference headings).
TABLES: dict[type, str] = {
    Config: "top level",
    CoordinationSettings: "[coordination]",
    DaemonSettings: "[daemon]",
    AlertmanagerSettings: "[alertmanager]",
    ClusterSettings: "[[clusters]]",
    AwsAccountSettings: "[[aws_accounts]]",
    RepositorySettings: "[[repositories]]",
    RegistrySettings: "[[registries]]",
    EnvironmentSettings: "[[environments]]",
    KubernetesEnvSettings: "[environments.kubernetes]",
    AwsEnvSettings: "[environments.aws]",
    IgnoreRule: "[[environments.ignore]]",
    EnforceWindow: "[[environments.enforce_windows]]",
    BrakeSettings: "[environments.brakes]",
    ImagePolicySettings: "[[environments.images]]",
    WriteBackSettings: "[environments.write_back]",
    SignatureSettings: "[environments.signatures]",
}


def default_config_path() -> Path:
    return Path(os.environ.get("DRIFTD_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file. Raises ConfigErrors listing every problem."""
    p = Path(path)
    file = str(p)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigErrors([ConfigError(file, "", f"cannot read the config file: {e.strerror or e}")]) from e
    try:
        data = tomli.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigErrors([ConfigError(file, "", f"not UTF-8 at byte {e.start}")]) from e
    except tomli.TOMLDecodeError as e:
        raise ConfigErrors([ConfigError(file, "", f"invalid TOML: {e}")]) from e
    return parse_config(data, p)


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    r = _Reader(str(path), path.parent)
    cfg = r.build(data)
    if r.errors:
        raise ConfigErrors(r.errors)
    return cfg


# --- validation ---------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_Missing = object()


class _Reader:
    """Reads one TOML document, collecting errors with their key paths."""

    def __init__(self, file: str, base: Path) -> None:
        self.file = file
        self.base = base
        self.errors: list[ConfigError] = []

    def err(self, key: str, message: str) -> None:
        self.errors.append(ConfigError(self.file, key, message))

    # Table helpers. Each returns a default on error so validation goes on.
    def table(self, data: Mapping[str, Any], key: str, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            self.err(key, f"expected a table, found {_tname(data)}")
            return {}
        for k in data:
            if k not in allowed:
                hint = _closest(k, allowed)
                self.err(_join(key, k), "unknown key" + (f"; did you mean {hint!r}?" if hint else
                         f"; allowed keys: {', '.join(sorted(allowed))}"))
        return dict(data)

    def get(self, t: Mapping[str, Any], key: str, name: str, kind: type[T] | tuple[type, ...],
            default: Any = _Missing, expected: str = "") -> Any:
        if name not in t:
            if default is _Missing:
                self.err(_join(key, name), f"required key is missing (expected {expected or _tname_t(kind)})")
                return None
            return default
        v = t[name]
        ok = isinstance(v, kind) and not (isinstance(v, bool) and kind in (int, float, (int, float)))
        if not ok:
            self.err(_join(key, name), f"expected {expected or _tname_t(kind)}, found {_tname(v)} {v!r}")
            return None if default is _Missing else default
        return v

    def s(self, t: Mapping[str, Any], key: str, name: str, default: Any = _Missing) -> Any:
        return self.get(t, key, name, str, default, "a string")

    def name(self, t: Mapping[str, Any], key: str) -> str:
        v = self.s(t, key, "name")
        if isinstance(v, str) and not _NAME_RE.match(v):
            self.err(_join(key, "name"), f"expected letters, digits, '.', '_' or '-' (max 63), found {v!r}")
        return v or ""

    def duration(self, t: Mapping[str, Any], key: str, name: str, default: float, *,
                 allow_zero: bool = False) -> float:
        """A duration in seconds, from "1h30m" or a number. Above zero (``allow_zero``: or zero) and finite:
        a zero interval spins, a zero resend ends alerts as they start, nan and inf compare false with
        everything and disable the timers that use them."""
        v = t.get(name, _Missing)
        if v is _Missing:
            return default
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
                above = "zero or more" if allow_zero else "above zero"
                self.err(_join(key, name), f"expected a finite duration {above} (such as \"30s\"), found {v!r}")
                return default
            return float(v)
        if not isinstance(v, str):
            self.err(_join(key, name), f"expected a duration such as \"30s\", found {_tname(v)} {v!r}")
            return default
        try:
            d = parse_duration(v)
        except ValueError as e:
            self.err(_join(key, name), str(e))
            return default
        if d < 0 or (d == 0 and not allow_zero) or not math.isfinite(d):
            self.err(_join(key, name), f"expected a duration above zero, found {v!r}")
            return default
        return d

    def fraction(self, t: Mapping[str, Any], key: str, name: str, default: float) -> float:
        v = self.get(t, key, name, (int, float), default, "a number between 0 and 1")
        if v is None or not (0 <= float(v) <= 1):
            if v is not None:
                self.err(_join(key, name), f"expected a number between 0 and 1, found {v!r}")
            return default
        return float(v)

    def positive_int(self, t: Mapping[str, Any], key: str, name: str, default: int) -> int:
        v = self.get(t, key, name, int, default, "a positive integer")
        if v is None or v < 1:
            if v is not None:
                self.err(_join(key, name), f"expected a positive integer, found {v!r}")
            return default
        return int(v)

    def strings(self, t: Mapping[str, Any], key: str, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v = t.get(name, _Missing)
        if v is _Missing:
            return default
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.err(_join(key, name), f"expected a list of strings, found {_tname(v)} {v!r}")
            return default
        return tuple(v)

    def str_map(self, t: Mapping[str, Any], key: str, name: str) -> dict[str, str]:
        v = t.get(name, {})
        if not isinstance(v, Mapping):
            self.err(_join(key, name), f"expected a table of strings, found {_tname(v)}")
            return {}
        out: dict[str, str] = {}
        for k, x in v.items():
            if isinstance(x, bool) or not isinstance(x, (str, int, float)):
                self.err(_join(_join(key, name), k), f"expected a string, found {_tname(x)}")
            else:
                out[k] = str(x)
        return out

    def path(self, t: Mapping[str, Any], key: str, name: str, *, secret: bool = False) -> Path | None:
        v = self.s(t, key, name, None)
        if v is None:
            return None
        p = Path(os.path.expanduser(v))
        if not p.is_absolute():
            p = self.base / p
        if secret and not p.exists():
            self.err(_join(key, name), f"file {str(p)!r} does not exist")
        return p

    def choice(self, t: Mapping[str, Any], key: str, name: str, choices: tuple[str, ...], default: str) -> str:
        v = self.s(t, key, name, default)
        if v is not None and v not in choices:
            self.err(_join(key, name), f"expected one of {', '.join(choices)}, found {v!r}")
            return default
        return v or default

    def enum(self, t: Mapping[str, Any], key: str, name: str, cls: type[E], default: E) -> E:
        """One value of a closed vocabulary; the choices are the enum's values."""
        return cls(self.choice(t, key, name, tuple(m.value for m in cls), default.value))

    def list_of_tables(self, data: Mapping[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
        v = data.get(name, [])
        if not isinstance(v, list):
            self.err(name, f"expected an array of tables ([[{name}]]), found {_tname(v)}")
            return []
        out = []
        for i, item in enumerate(v):
            k = f"{name}[{i}]"
            if not isinstance(item, Mapping):
                self.err(k, f"expected a table, found {_tname(item)}")
                continue
            out.append((k, dict(item)))
        return out

    def unique(self, items: list[tuple[str, Any]], what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, str] = {}
        for key, obj in items:
            n = obj.name if hasattr(obj, "name") else obj.host
            if n in out:
                self.err(key, f"duplicate {what} name {n!r} (first defined at {first[n]})")
                continue
            out[n], first[n] = obj, key
        return out

    # --- sections --------------------------------------------------------------------------

    def build(self, data: Mapping[str, Any]) -> Config:
        top = self.table(data, "", toml_keys(Config))
        daemon = self.daemon(top.get("daemon", {}))
        am = self.alertmanager(top.get("alertmanager", {}))
        clusters = self.unique([(k, self.cluster(k, t)) for k, t in self.list_of_tables(top, "clusters")], "cluster")
        accounts = self.unique([(k, self.account(k, t)) for k, t in self.list_of_tables(top, "aws_accounts")],
                               "AWS account")
        repos = self.unique([(k, self.repository(k, t)) for k, t in self.list_of_tables(top, "repositories")],
                            "repository")
        reg_list = [(k, self.registry(k, t)) for k, t in self.list_of_tables(top, "registries")]
        for k, reg in reg_list:
            if reg.aws_account and reg.aws_account not in accounts:
                self.err(f"{k}.aws_account", f"no [[aws_accounts]] named {reg.aws_account!r}" + _known(accounts))
        regs = self.unique(reg_list, "registry")
        envs = self.unique([(k, self.environment(k, t, clusters, accounts, repos))
                            for k, t in self.list_of_tables(top, "environments")], "environment")
        coordination = self.coordination(top["coordination"], clusters) if "coordination" in top else None
        return Config(path=Path(self.file), daemon=daemon, alertmanager=am, clusters=clusters,
                      aws_accounts=accounts, repositories=repos, registries=regs,
                      environments=tuple(envs.values()), coordination=coordination)

    def coordination(self, raw: Any, clusters: Mapping[str, ClusterSettings]) -> CoordinationSettings | None:
        k = "coordination"
        t = self.table(raw, k, toml_keys(CoordinationSettings))
        d = defaults(CoordinationSettings)
        cluster = self.s(t, k, "cluster")
        if isinstance(cluster, str) and cluster not in clusters:
            self.err(f"{k}.cluster", f"no [[clusters]] named {cluster!r}" + _known(clusters))
        namespace = self.s(t, k, "namespace")
        # A StatefulSet pod's hostname is its stable name (driftd-0, driftd-1): the default identity.
        identity = self.s(t, k, "identity", d.identity) or \
            (os.environ.get("DRIFTD_REPLICA") or socket.gethostname()).lower()
        group = self.s(t, k, "group", d.group) or d.group
        for key, v in (("namespace", namespace), ("identity", identity), ("group", group)):
            if isinstance(v, str) and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?", v):
                self.err(f"{k}.{key}", f"expected a lower-case DNS name (a-z, 0-9, '-', '.'), found {v!r}")
        duration = self.duration(t, k, "lease_duration", d.lease_duration)
        if duration < 3:
            self.err(f"{k}.lease_duration", f"expected at least 3s (renewed every third of it), found {duration:g}s")
        if not isinstance(cluster, str) or not isinstance(namespace, str):
            return None
        return CoordinationSettings(cluster=cluster, namespace=namespace, identity=identity, group=group,
                                    lease_duration=duration)

    def daemon(self, raw: Any) -> DaemonSettings:
        k = "daemon"
        t = self.table(raw, k, toml_keys(DaemonSettings))
        d = defaults(DaemonSettings)
        state_dir = self.path(t, k, "state_dir") or d.state_dir
        listen = self.s(t, k, "listen", d.listen) or d.listen
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            self.err(f"{k}.listen", f"expected host:port such as 127.0.0.1:9717, found {listen!r}")
            listen = d.listen
        return DaemonSettings(
            state_dir=state_dir,
            listen=listen,
            log_format=self.choice(t, k, "log_format", ("auto", "json", "text"), d.log_format),
            log_level=self.choice(t, k, "log_level", ("debug", "info", "warning", "error"), d.log_level),
            retention=self.duration(t, k, "retention", d.retention),
            shutdown_timeout=self.duration(t, k, "shutdown_timeout", d.shutdown_timeout),
            git_concurrency=self.positive_int(t, k, "git_concurrency", d.git_concurrency),
            api_token_file=self.path(t, k, "api_token_file", secret=True),
            secret_name_patterns=self.regexes(t, k, "secret_name_patterns"),
            max_tree_nodes=self.positive_int(t, k, "max_tree_nodes", d.max_tree_nodes),
        )

    def regexes(self, t: Mapping[str, Any], key: str, name: str) -> tuple[str, ...]:
        out = self.strings(t, key, name)
        for i, p in enumerate(out):
            try:
                re.compile(p)
            except re.error as e:
                self.err(f"{_join(key, name)}[{i}]", f"not a regular expression ({e}): {p!r}")
        return out

    def alertmanager(self, raw: Any) -> AlertmanagerSettings:
        k = "alertmanager"
        t = self.table(raw, k, toml_keys(AlertmanagerSettings))
        d = defaults(AlertmanagerSettings)
        urls = tuple(self.no_userinfo(f"{k}.urls[{i}]", u) for i, u in enumerate(self.strings(t, k, "urls")))
        for i, u in enumerate(urls):
            if not re.match(r"^https?://[^/\s]+", u):
                self.err(f"{k}.urls[{i}]", f"expected an http:// or https:// URL, found {u!r}")
        username = self.s(t, k, "username", None)
        password_file = self.path(t, k, "password_file", secret=True)
        bearer_token_file = self.path(t, k, "bearer_token_file", secret=True)
        if (username is None) != (password_file is None):
            self.err(f"{k}.username" if username is None else f"{k}.password_file",
                     "basic authentication needs both username and password_file")
        if bearer_token_file is not None and (username is not None or password_file is not None):
            self.err(f"{k}.bearer_token_file", "use either bearer_token_file or username with password_file, not both")
        return AlertmanagerSettings(
            urls=tuple(u.rstrip("/") for u in urls),
            resend_interval=self.duration(t, k, "resend_interval", d.resend_interval),
            error_grace=self.duration(t, k, "error_grace", d.error_grace, allow_zero=True),
            timeout=self.duration(t, k, "timeout", d.timeout),
            external_url=self.no_userinfo(f"{k}.external_url", self.s(t, k, "external_url", "") or "").rstrip("/"),
            username=username,
            password_file=password_file,
            bearer_token_file=bearer_token_file,
        )

    def namespace(self, t: Mapping[str, Any], key: str, name: str, default: str) -> str:
        return self.checked_namespace(_join(key, name), self.s(t, key, name, default) or default)

    def checked_namespace(self, key: str, ns: str) -> str:
        """A Kubernetes namespace (RFC 1123 label): it becomes part of API paths."""
        problem = namespace_problem(ns)
        if problem:
            self.err(key, problem)
        return ns

    def no_userinfo(self, key: str, url: str, *, allow_user: bool = False) -> str:
        """``url`` without userinfo; any (or, with ``allow_user``, a password) is an error: a credential in a
        URL ends up in logs, alerts and error messages. The message shows the URL without it."""
        m = re.match(r"^([a-z][a-z0-9+.-]*://)([^/@\s]*)@", url, re.I)
        if not m:
            return url
        if allow_user and ":" not in m.group(2):
            return url  # ssh://git@host: a user name, not a credential
        bare = m.group(1) + url[m.end():]
        self.err(key, f"the URL carries credentials ({bare} with a user or token before '@'); remove them from the "
                 "URL and use the credential keys of this table (token_file, username, password_file, ...)")
        return bare

    def cluster(self, k: str, raw: dict[str, Any]) -> ClusterSettings:
        t = self.table(raw, k, toml_keys(ClusterSettings))
        d = defaults(ClusterSettings)
        return ClusterSettings(
            name=self.name(t, k),
            kubeconfig=self.path(t, k, "kubeconfig", secret=True),
            context=self.s(t, k, "context", None),
            concurrency=self.positive_int(t, k, "concurrency", d.concurrency),
        )

    def account(self, k: str, raw: dict[str, Any]) -> AwsAccountSettings:
        t = self.table(raw, k, toml_keys(AwsAccountSettings))
        d = defaults(AwsAccountSettings)
        role = self.s(t, k, "role_arn", None)
        if role is not None and not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+", role):
            self.err(f"{k}.role_arn", f"expected arn:aws:iam::<12 digits>:role/<name>, found {role!r}")
        region = self.s(t, k, "region")
        if isinstance(region, str) and not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", region):
            self.err(f"{k}.region", f"expected an AWS region such as eu-west-1, found {region!r}")
        return AwsAccountSettings(
            name=self.name(t, k),
            region=region or "",
            profile=self.s(t, k, "profile", None),
            role_arn=role,
            endpoint_url=self.no_userinfo(f"{k}.endpoint_url", self.s(t, k, "endpoint_url", "") or "") or None,
            web_identity_token_file=self.path(t, k, "web_identity_token_file"),
            concurrency=self.positive_int(t, k, "concurrency", d.concurrency),
            cloudtrail=bool(self.get(t, k, "cloudtrail", bool, d.cloudtrail, "true or false")),
        )

    def repository(self, k: str, raw: dict[str, Any]) -> RepositorySettings:
        t = self.table(raw, k, toml_keys(RepositorySettings))
        d = defaults(RepositorySettings)
        url = self.no_userinfo(f"{k}.url", self.s(t, k, "url") or "", allow_user=(self.s(t, k, "url") or "")
                               .startswith("ssh://"))
        if url and not (re.match(r"^(https?|git|ssh|file)://", url) or url.startswith(("/", "./", "../", "~"))
                        or re.match(r"^[\w.-]+@[\w.-]+:", url)):
            self.err(f"{k}.url", f"expected an http(s)://, git://, ssh://, file:// URL or a local path, found {url!r}")
        if url.startswith(("/", "./", "../", "~")):
            url = str((self.base / os.path.expanduser(url)).resolve())
        return RepositorySettings(
            name=self.name(t, k),
            url=url,
            poll_interval=self.duration(t, k, "poll_interval", d.poll_interval),
            timeout=self.duration(t, k, "timeout", d.timeout),
            token_file=self.path(t, k, "token_file", secret=True),
            username=self.s(t, k, "username", None),
            ssh_key_file=self.path(t, k, "ssh_key_file", secret=True),
            known_hosts_file=self.path(t, k, "known_hosts_file", secret=True),
            webhook_secret_file=self.path(t, k, "webhook_secret_file", secret=True),
        )

    def registry(self, k: str, raw: dict[str, Any]) -> RegistrySettings:
        t = self.table(raw, k, toml_keys(RegistrySettings))
        d = defaults(RegistrySettings)
        return RegistrySettings(
            host=self.s(t, k, "host") or "",
            username=self.s(t, k, "username", None),
            password_file=self.path(t, k, "password_file", secret=True),
            docker_config=self.path(t, k, "docker_config", secret=True),
            insecure=bool(self.get(t, k, "insecure", bool, d.insecure, "true or false")),
            concurrency=self.positive_int(t, k, "concurrency", d.concurrency),
            aws_account=self.s(t, k, "aws_account", None),
        )

    def environment(self, k: str, raw: dict[str, Any], clusters: Mapping[str, ClusterSettings],
                    accounts: Mapping[str, AwsAccountSettings],
                    repos: Mapping[str, RepositorySettings]) -> EnvironmentSettings:
        t = self.table(raw, k, toml_keys(EnvironmentSettings))
        d = defaults(EnvironmentSettings)
        repo = self.s(t, k, "repository") or ""
        if repo and repo not in repos:
            self.err(f"{k}.repository", f"no [[repositories]] named {repo!r}" + _known(repos))
        kube = self.kube_env(f"{k}.kubernetes", t["kubernetes"], clusters) if "kubernetes" in t else None
        aws = self.aws_env(f"{k}.aws", t["aws"], accounts) if "aws" in t else None
        if kube is None and aws is None:
            self.err(k, "an environment needs a [environments.kubernetes] or [environments.aws] table (or both)")
        images = tuple(self.image(f"{k}.images[{i}]", x) for i, x in
                       enumerate(self._sub_list(t, k, "images")))
        seen: set[str] = set()
        for i, img in enumerate(images):
            if img.name in seen:
                self.err(f"{k}.images[{i}].name", f"duplicate image policy name {img.name!r}")
            seen.add(img.name)
        return EnvironmentSettings(
            name=self.name(t, k),
            repository=repo,
            branch=self.s(t, k, "branch") or "",
            mode=self.enum(t, k, "mode", Mode, d.mode),
            interval=self.duration(t, k, "interval", d.interval),
            severity=self.enum(t, k, "severity", Severity, d.severity),
            dry_run=bool(self.get(t, k, "dry_run", bool, d.dry_run, "true or false")),
            kubernetes=kube,
            aws=aws,
            ignore=tuple(self.ignore(f"{k}.ignore[{i}]", x) for i, x in enumerate(self._sub_list(t, k, "ignore"))),
            enforce_windows=tuple(self.window(f"{k}.enforce_windows[{i}]", x)
                                  for i, x in enumerate(self._sub_list(t, k, "enforce_windows"))),
            brakes=self.brakes(f"{k}.brakes", t.get("brakes", {})),
            images=images,
            write_back=self.write_back(f"{k}.write_back", t.get("write_back", {})),
            sops_age_key_file=self.path(t, k, "sops_age_key_file", secret=True),
            signatures=self.signatures(f"{k}.signatures", t["signatures"]) if "signatures" in t else None,
        )

    def _sub_list(self, t: Mapping[str, Any], k: str, name: str) -> list[dict[str, Any]]:
        v = t.get(name, [])
        if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
            self.err(f"{k}.{name}", f"expected an array of tables ([[environments.{name}]]), found {_tname(v)}")
            return []
        return [dict(x) for x in v]

    def kube_env(self, k: str, raw: Any, clusters: Mapping[str, ClusterSettings]) -> KubernetesEnvSettings:
        t = self.table(raw, k, toml_keys(KubernetesEnvSettings))
        cluster = self.s(t, k, "cluster") or ""
        if cluster and cluster not in clusters:
            self.err(f"{k}.cluster", f"no [[clusters]] named {cluster!r}" + _known(clusters))
        d = defaults(KubernetesEnvSettings)
        return KubernetesEnvSettings(
            cluster=cluster,
            path=self.tree_path(t, k, "path", d.path),
            namespace=self.namespace(t, k, "namespace", d.namespace),
            prune=bool(self.get(t, k, "prune", bool, d.prune, "true or false")),
            prune_max_fraction=self.fraction(t, k, "prune_max_fraction", d.prune_max_fraction),
            prune_kinds=self.prune_kinds(t, k),
            watch_namespaces=tuple(self.checked_namespace(f"{k}.watch_namespaces[{i}]", ns)
                                   for i, ns in enumerate(self.strings(t, k, "watch_namespaces"))),
            human_managers=self.strings(t, k, "human_managers", d.human_managers),
            resync_interval=self.duration(t, k, "resync_interval", d.resync_interval),
            allow_remote_bases=bool(self.get(t, k, "allow_remote_bases", bool, d.allow_remote_bases, "true or false")),
        )

    def prune_kinds(self, t: Mapping[str, Any], k: str) -> tuple[str, ...]:
        kinds = self.strings(t, k, "prune_kinds")
        allowed = ("Namespace", "CustomResourceDefinition", "PersistentVolumeClaim")
        for kind in kinds:
            if kind not in allowed:
                self.err(f"{k}.prune_kinds", f"{kind!r} is not a kind that needs opting in to pruning; "
                         f"expected some of {', '.join(allowed)} (other kinds are pruned with prune = true)")
        return tuple(x for x in kinds if x in allowed)

    def aws_env(self, k: str, raw: Any, accounts: Mapping[str, AwsAccountSettings]) -> AwsEnvSettings:
        t = self.table(raw, k, toml_keys(AwsEnvSettings))
        d = defaults(AwsEnvSettings)
        account = self.s(t, k, "account") or ""
        if account and account not in accounts:
            self.err(f"{k}.account", f"no [[aws_accounts]] named {account!r}" + _known(accounts))
        return AwsEnvSettings(
            account=account,
            path=self.tree_path(t, k, "path", d.path),
            parameters=self.str_map(t, k, "parameters"),
            tag_filter=self.str_map(t, k, "tag_filter"),
            unmanaged=bool(self.get(t, k, "unmanaged", bool, d.unmanaged, "true or false")),
            baselines=bool(self.get(t, k, "baselines", bool, d.baselines, "true or false")),
        )

    def tree_path(self, t: Mapping[str, Any], k: str, name: str, default: str) -> str:
        v = self.s(t, k, name, default)
        if v is None:
            return default
        parts = [p for p in v.strip("/").split("/") if p not in ("", ".")]
        if ".." in parts:
            self.err(f"{k}.{name}", f"expected a directory inside the branch, found {v!r} (no '..')")
            return default
        return "/".join(parts)

    def ignore(self, k: str, raw: dict[str, Any]) -> IgnoreRule:
        t = self.table(raw, k, toml_keys(IgnoreRule))
        d = defaults(IgnoreRule)
        paths = self.strings(t, k, "paths")
        if "paths" not in t:
            self.err(f"{k}.paths",
                     "required key is missing (expected a list of JSON pointers such as \"/spec/replicas\")")
        for i, p in enumerate(paths):
            if not p.startswith("/"):
                self.err(f"{k}.paths[{i}]", f"expected a JSON pointer starting with '/', found {p!r}")
        return IgnoreRule(
            paths=paths,
            kind=self.s(t, k, "kind", d.kind) or d.kind,
            name=self.s(t, k, "name", d.name) or d.name,
            namespace=self.s(t, k, "namespace", d.namespace) or d.namespace,
            target=self.choice(t, k, "target", ("*", "kubernetes", "aws"), d.target),
        )

    def window(self, k: str, raw: dict[str, Any]) -> EnforceWindow:
        t = self.table(raw, k, toml_keys(EnforceWindow))
        d = defaults(EnforceWindow)
        sched = self.s(t, k, "schedule") or ""
        if sched and len(sched.split()) != 5:
            self.err(f"{k}.schedule", f"expected a five-field cron expression such as \"0 9 * * 1-5\", found {sched!r}")
        tz = self.s(t, k, "timezone", d.timezone) or d.timezone
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.err(f"{k}.timezone", f"unknown time zone {tz!r} (expected an IANA name such as Europe/Paris)")
        if "duration" not in t:
            self.err(f"{k}.duration", "required key is missing (expected a duration such as \"8h\")")
        return EnforceWindow(schedule=sched, duration=self.duration(t, k, "duration", 3600.0), timezone=tz)

    def brakes(self, k: str, raw: Any) -> BrakeSettings:
        t = self.table(raw, k, toml_keys(BrakeSettings))
        d = defaults(BrakeSettings)
        return BrakeSettings(
            storm_fraction=self.fraction(t, k, "storm_fraction", d.storm_fraction),
            storm_min_objects=self.positive_int(t, k, "storm_min_objects", d.storm_min_objects),
            fight_max_reverts=self.positive_int(t, k, "fight_max_reverts", d.fight_max_reverts),
            fight_window=self.duration(t, k, "fight_window", d.fight_window),
            max_reverts_per_cycle=self.positive_int(t, k, "max_reverts_per_cycle", d.max_reverts_per_cycle),
        )

    def image(self, k: str, raw: dict[str, Any]) -> ImagePolicySettings:
        t = self.table(raw, k, toml_keys(ImagePolicySettings))
        d = defaults(ImagePolicySettings)
        kinds = [x for x in IMAGE_POLICY_KEYS if x in t]
        if len(kinds) != 1:
            self.err(k, "expected exactly one of semver = \"<range>\", alphabetical = true, numerical = true"
                     + (f", found {', '.join(kinds)}" if kinds else ""))
        policy = kinds[0] if kinds else "semver"
        rng = ""
        if policy == "semver":
            rng = self.s(t, k, "semver", "*") or "*"
            try:
                parse_range(rng)
            except ValueError as e:
                self.err(f"{k}.semver", f"invalid semver range {rng!r}: {e}")
        else:
            self.get(t, k, policy, bool, True, "true")
        pattern = self.s(t, k, "pattern", "") or ""
        if pattern:
            try:
                re.compile(pattern)
            except re.error as e:
                self.err(f"{k}.pattern", f"invalid regular expression {pattern!r}: {e}")
        return ImagePolicySettings(
            name=self.name(t, k),
            image=self.s(t, k, "image") or "",
            policy=policy,
            range=rng,
            order=self.choice(t, k, "order", ("asc", "desc"), d.order),
            pattern=pattern,
            exclude=self.strings(t, k, "exclude", d.exclude),
            action=self.choice(t, k, "action", ("report", "write-back"), d.action),
        )

    def signatures(self, k: str, raw: Any) -> SignatureSettings | None:
        t = self.table(raw, k, toml_keys(SignatureSettings))
        files = self.strings(t, k, "trusted_key_files")
        if not files:
            # An empty list would trust nothing and stop the environment: say so now, not at the first commit.
            self.err(f"{k}.trusted_key_files", "list at least one OpenPGP or SSH public key file (or remove "
                     "[environments.signatures] to act on unsigned commits)")
            return None
        paths = []
        for i, f in enumerate(files):
            p = self.path({"f": f}, f"{k}.trusted_key_files[{i}]", "f")
            if p is not None and not p.exists():
                self.err(f"{k}.trusted_key_files[{i}]", f"file {str(p)!r} does not exist")
            if p is not None:
                paths.append(p)
        return SignatureSettings(trusted_key_files=tuple(paths))

    def write_back(self, k: str, raw: Any) -> WriteBackSettings:
        t = self.table(raw, k, toml_keys(WriteBackSettings))
        d = defaults(WriteBackSettings)
        return WriteBackSettings(author=self.s(t, k, "author", d.author) or d.author,
                                 message=self.s(t, k, "message", d.message) or d.message)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _known(m: Mapping[str, Any]) -> str:
    return f" (defined: {', '.join(sorted(m))})" if m else " (none defined)"


def _closest(word: str, options: frozenset[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return m[0] if m else None


def _tname(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(v), type(v).__name__)


def _tname_t(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_tname_t(k) for k in kind)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, kind.__name__)
