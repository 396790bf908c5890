"""TOML configuration: the settings dataclasses (``settings``) and their parsing (``parse``).

Everything is re-exported here, so ``from driftd.config import EnvironmentSettings, load_config``
works whichever submodule defines it.
"""

from __future__ import annotations

from .parse import (
    DEFAULT_CONFIG_PATH,
    TABLES,
    default_config_path,
    defaults,
    load_config,
    parse_config,
    parse_duration,
    toml_keys,
)
from .settings import (
    DEFAULT_HUMAN_MANAGERS,
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

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_HUMAN_MANAGERS",
    "TABLES",
    "AlertmanagerSettings",
    "AwsAccountSettings",
    "AwsEnvSettings",
    "BrakeSettings",
    "ClusterSettings",
    "Config",
    "CoordinationSettings",
    "DaemonSettings",
    "EnforceWindow",
    "EnvironmentSettings",
    "IgnoreRule",
    "ImagePolicySettings",
    "KubernetesEnvSettings",
    "RegistrySettings",
    "RepositorySettings",
    "SignatureSettings",
    "WriteBackSettings",
    "default_config_path",
    "defaults",
    "load_config",
    "parse_config",
    "parse_duration",
    "toml_keys",
]
