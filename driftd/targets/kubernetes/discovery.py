"""kind + apiVersion -> REST resource, namespaced or not.

Only the group-versions in use are fetched (one request each, cached), so an unavailable
aggregated API (an APIService whose backend is down) never breaks the others. A kind not
found is looked up again once per ``refresh_after`` seconds: a CRD applied a moment ago
becomes known without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import TargetError
from ...model import ClusterInfo
from ...names import segment
from .client import KubeClient, NotFound

# Aggregated discovery (GA in Kubernetes 1.30): every group, version and kind in two requests.
_AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    resource: str  # plural, e.g. "deployments"
    kind: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The API path; names from Git are validated when read, and every segment is escaped here too."""
        base = f"/apis/{segment(self.group)}/{segment(self.version)}" if self.group else f"/api/{segment(self.version)}"
        if self.namespaced and namespace:
            base += f"/namespaces/{segment(namespace)}"
        base += f"/{segment(self.resource)}"
        return f"{base}/{segment(name)}" if name else base

    @property
    def label(self) -> str:
        """``deployments.apps`` as RBAC and kubectl name it."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


_CRUD = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})


def crd_kinds(bodies: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], ResourceInfo]:
    """(apiVersion, kind) -> resource for every served version of the CustomResourceDefinitions among
    ``bodies`` (desired manifests): what discovery will say once they are Established. Lets a desired
    state that holds CRDs and resources of them be planned before the CRDs exist (Flux's staged apply)."""
    out: dict[tuple[str, str], ResourceInfo] = {}
    for b in bodies:
        if b.get("kind") != "CustomResourceDefinition" or not str(b.get("apiVersion", "")).startswith(
                "apiextensions.k8s.io/"):
            continue
        spec = b.get("spec")
        names = spec.get("names") if isinstance(spec, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(names, Mapping):
            continue
        group, kind, plural = spec.get("group"), names.get("kind"), names.get("plural")
        if not (isinstance(group, str) and isinstance(kind, str) and isinstance(plural, str)):
            continue
        for v in spec.get("versions") or ():
            if isinstance(v, Mapping) and isinstance(v.get("name"), str) and v.get("served", True):
                out[(f"{group}/{v['name']}", kind)] = ResourceInfo(
                    group=group, version=v["name"], resource=plural, kind=kind,
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced", verbs=_CRUD)
    return out


class UnknownKind(TargetError):
    """No resource serves this kind: a typo, or a CRD that is not installed (yet)."""

    retryable = True


class Discovery:
    def __init__(self, client: KubeClient, *, refresh_after: float = 10.0) -> None:
        self._client = client
        self._by_gv: dict[str, dict[str, ResourceInfo]] = {}
        self._fetched_at: dict[str, float] = {}
        self._refresh_after = refresh_after

    async def resolve(self, api_version: str, kind: str) -> ResourceInfo:
        kinds = self._by_gv.get(api_version)
        if kinds is not None and kind in kinds:
            return kinds[kind]
        if kinds is None or time.monotonic() - self._fetched_at.get(api_version, 0.0) > self._refresh_after:
            kinds = await self._fetch(api_version)
        if kind in kinds:
            return kinds[kind]
        raise UnknownKind(f"the API server serves no kind {kind} in {api_version} (is its CRD installed?)",
                          subject=f"{kind} {api_version}")

    async def cluster_info(self) -> ClusterInfo:
        """The server's version and every group/version and group/version/Kind it serves, as
        ``helm install`` sees them (``.Capabilities``), in two or three requests."""
        version = await self._client.request("GET", "/version", verb="get", resource="version")
        apis: set[str] = set()
        for path in ("/api", "/apis"):
            doc = await self._client.request("GET", path, verb="get", resource="discovery", accept=_AGGREGATED)
            if doc.get("kind") == "APIGroupDiscoveryList":
                for group in doc.get("items") or ():
                    name = str((group.get("metadata") or {}).get("name") or "")
                    for v in group.get("versions") or ():
                        gv = f"{name}/{v.get('version')}" if name else str(v.get("version"))
                        apis.add(gv)
                        for r in v.get("resources") or ():
                            kind = (r.get("responseKind") or {}).get("kind")
                            if kind:
                                apis.add(f"{gv}/{kind}")
            else:  # an older server: group/versions only (APIVersions / APIGroupList)
                apis.update(str(v) for v in doc.get("versions") or () if isinstance(v, str))
                for group in doc.get("groups") or ():
                    apis.update(str(v.get("groupVersion")) for v in group.get("versions") or ())
        return ClusterInfo(kube_version=str(version.get("gitVersion") or ""), api_versions=tuple(sorted(apis)))

    def forget(self, api_version: str) -> None:
        self._by_gv.pop(api_version, None)

    async def _fetch(self, api_version: str) -> dict[str, ResourceInfo]:
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            doc = await self._client.request("GET", path, verb="get", resource="discovery")
        except NotFound:
            doc = {"resources": []}
        kinds: dict[str, ResourceInfo] = {}
        for r in doc.get("resources") or ():
            name = str(r.get("name", ""))
            if "/" in name:  # subresources such as deployments/scale
                continue
            kinds[str(r["kind"])] = ResourceInfo(group=group, version=version, resource=name, kind=str(r["kind"]),
                                                 namespaced=bool(r.get("namespaced")),
                                                 verbs=frozenset(r.get("verbs") or ()))
        self._by_gv[api_version] = kinds
        self._fetched_at[api_version] = time.monotonic()
        return kinds
