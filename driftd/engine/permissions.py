"""``driftd permissions``: the IAM policy and Kubernetes RBAC the configured environments need.

Least privilege from what Git declares: each environment's desired state is
loaded (fetching its repository) to learn which CloudFormation types and
Kubernetes kinds it holds; read actions for ``observe``/``alert``, read and
write for ``enforce``. When an environment's desired state cannot be loaded,
every supported type is assumed for it (and the output says so), so the
policy is never too narrow.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import anyio

from ..config import Config
from ..errors import DriftdError
from ..log import get_logger
from ..model import DesiredState, Mode

log = get_logger(__name__)

_IRREGULAR = {"Endpoints": "endpoints", "PodSecurityPolicy": "podsecuritypolicies"}


def resource_name(kind: str) -> str:
    """Kind -> resource (plural, lower case) the way the API server names them for built-in kinds."""
    if kind in _IRREGULAR:
        return _IRREGULAR[kind]
    k = kind.lower()
    if k.endswith("y") and not k.endswith(("ay", "ey", "oy", "uy")):
        return k[:-1] + "ies"
    if k.endswith(("s", "x", "ch", "sh")):
        return k + "es"
    return k + "s"


async def _desired(config: Config) -> dict[str, DesiredState | None]:
    from .pools import Sources, aws_context

    sources = Sources(config)
    out: dict[str, DesiredState | None] = {}
    fetched: set[str] = set()
    for env in config.environments:
        try:
            if env.repository not in fetched:
                fetched.add(env.repository)
                await sources.fetch(env.repository)
            # No cluster here: Helm renders against helm.FALLBACK_CLUSTER (RBAC needs kinds, not exact objects).
            result = await sources.load(env, **aws_context(config, env), cluster=None)
            out[env.name] = result.state
        except (DriftdError, OSError) as e:
            log.warning("permissions.desired_unavailable", env=env.name, error=str(e))
            out[env.name] = None
    return out


def aws_policies(config: Config, desired: dict[str, DesiredState | None]) -> tuple[dict[str, Any], list[str]]:
    from ..targets.aws import permissions as aws_perms
    from ..targets.aws import registry

    types: dict[str, set[str]] = defaultdict(set)
    enforce: dict[str, bool] = defaultdict(bool)
    notes: list[str] = []
    for env in config.environments:
        if env.aws is None:
            continue
        state = desired.get(env.name)
        if state is None:
            notes.append(f"{env.name}: desired state not loaded; every supported AWS type assumed")
            types[env.aws.account].update(registry.supported_types())
        else:
            types[env.aws.account].update(d.type for d in state.aws)
        enforce[env.aws.account] |= env.mode is Mode.ENFORCE
    return {acct: aws_perms.iam_policy(sorted(ts), enforce[acct]) for acct, ts in sorted(types.items())}, notes


def kubernetes_roles(config: Config, desired: dict[str, DesiredState | None]) -> tuple[dict[str, Any], list[str]]:
    try:
        from ..targets.kubernetes import rbac_rules
    except ImportError:
        return {}, []
    kinds: dict[str, set[tuple[str, str]]] = defaultdict(set)
    enforce: dict[str, bool] = defaultdict(bool)
    notes: list[str] = []
    for env in config.environments:
        if env.kubernetes is None:
            continue
        state = desired.get(env.name)
        cluster = env.kubernetes.cluster
        if state is None:
            notes.append(f"{env.name}: desired state not loaded; all resources assumed")
            kinds[cluster].add(("*", "*"))
        else:
            kinds[cluster].update((o.key.group, resource_name(o.key.kind)) for o in state.kubernetes)
        enforce[cluster] |= env.mode is Mode.ENFORCE or env.kubernetes.prune
    return {c: {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": f"driftd-{c}"}, "rules": rbac_rules(sorted(ks), enforce[c])}
            for c, ks in sorted(kinds.items())}, notes


def coordination_role(config: Config) -> dict[str, Any] | None:
    """With ``[coordination]``: the namespaced Role the replicas' Leases need, on the coordination cluster."""
    c = config.coordination
    if c is None:
        return None
    return {"cluster": c.cluster,
            "role": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                     "metadata": {"name": "driftd-leases", "namespace": c.namespace},
                     "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                "verbs": ["get", "list", "watch", "create", "update"]}]}}


def permissions(config: Config, desired: dict[str, DesiredState | None]) -> dict[str, Any]:
    aws, n1 = aws_policies(config, desired)
    kube, n2 = kubernetes_roles(config, desired)
    out: dict[str, Any] = {"aws": aws, "kubernetes": kube}
    coordination = coordination_role(config)
    if coordination is not None:
        out["coordination"] = coordination
    if n1 or n2:
        out["notes"] = n1 + n2
    return out


def render_permissions(config: Config, *, load: bool = True) -> str:
    """JSON: ``{"aws": {account: IAM policy}, "kubernetes": {cluster: ClusterRole}, "notes": [...]}``, plus
    ``"coordination": {"cluster": name, "role": Role}`` with ``[coordination]``."""
    desired: dict[str, DesiredState | None]
    if load and config.environments:
        desired = anyio.run(_desired, config)
    else:
        desired = {e.name: None for e in config.environments}
    return json.dumps(permissions(config, desired), indent=2, sort_keys=False) + "\n"
