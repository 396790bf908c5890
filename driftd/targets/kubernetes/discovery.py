"""kind + apiVersion -> REST resource, namespaced or not.

Only the group-versions in use are fetched (one request each, cached), so an unavailable
aggregated API (an APIService whose backend is down) never breaks the others. A kind not
found is looked up again once per ``refresh_after`` seconds: a CRD applied a moment ago
becomes known without a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...errors import TargetError
from .client import KubeClient, NotFound


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
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.resource}"
        return f"{base}/{name}" if name else base

    @property
    def label(self) -> str:
        """``deployments.apps`` as RBAC and kubectl name it."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


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
