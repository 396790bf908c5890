"""Helm releases declared in an environment's path, rendered with ``helm template``.

A file named ``driftd-helm.yaml`` (or ``.yml``) anywhere below the environment's path declares
releases::

    releases:
      - name: podinfo                 # release name (required)
        namespace: web                # default: the environment's namespace
        chart: ../../charts/podinfo   # a chart directory in this repository, relative to this file
        values_files: [podinfo-prod.yaml]   # relative to this file, below the environment's path
        values: {replicaCount: 2}     # inline values, applied last
      - name: ksm
        repository: https://prometheus-community.github.io/helm-charts   # a chart repository ...
        chart: kube-state-metrics
        version: 8.4.0                # ... needs an exact version
      - name: podinfo-oci
        chart: oci://ghcr.io/stefanprodan/charts/podinfo                # or an OCI reference
        version: 6.14.1
        plain_http: false             # true: the registry / repository speaks plain HTTP (in-cluster)

Rendering runs ``helm template`` with the cluster's version and API versions (``--kube-version``,
``--api-versions``), without hooks and chart tests (``--no-hooks --skip-tests``), CRDs included as
``helm install`` would create them, in a private temporary directory with a scrubbed environment,
a time limit and a bound on its output. A rendering is cached by (chart digest, values hash, release,
namespace, cluster version and API versions): the chart digest of a chart in the repository is its
Git tree id; of a remote chart, its repository, name and exact version.

Directories holding a ``Chart.yaml`` are charts: their files are never read as plain manifests. Nor
are release files and the values files they name.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..errors import DesiredStateError
from ..model import ClusterInfo
from .tools import ToolFailed, find_tool, private_dir, run_tool, scrubbed_env, write_files
from .yamlsafe import DEFAULT_LIMITS, Limits, load_documents

RELEASE_FILES = ("driftd-helm.yaml", "driftd-helm.yml")
CHART_FILE = "Chart.yaml"
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_OUTPUT = 32 * 1024 * 1024  # rendered YAML of one release
# Used when no cluster can be asked (driftd validate): a recent version, so kubeVersion constraints pass.
FALLBACK_CLUSTER = ClusterInfo(kube_version="v1.34.0", api_versions=())

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # helm: a DNS-1123 label, at most 53 characters
_KEYS = {"name", "namespace", "chart", "repository", "version", "values_files", "values", "plain_http"}


def is_release_file(path: str) -> bool:
    return path.rpartition("/")[2] in RELEASE_FILES


@dataclass(frozen=True)
class HelmRelease:
    file: str  # the release file that declares it (repository path)
    line: int
    name: str
    namespace: str | None  # None: the environment's namespace
    chart: str  # repository path of the chart directory, or the chart name / oci:// reference
    repository: str | None  # chart repository URL; None with a local chart or an oci:// chart
    version: str | None
    values_files: tuple[str, ...]  # repository paths
    values: Mapping[str, Any]
    plain_http: bool = False  # an OCI registry or chart repository served over plain HTTP (in-cluster)

    @property
    def local(self) -> bool:
        return self.repository is None and not self.chart.startswith("oci://")

    def where(self) -> str:
        return f"{self.file} (release {self.name})"


def parse_releases(data: bytes, file: str, limits: Limits = DEFAULT_LIMITS
                   ) -> tuple[list[HelmRelease], list[DesiredStateError]]:
    """The releases of one release file, and each problem with its line."""
    try:
        docs = [d for d in load_documents(data, file, limits=limits, mark_depth=1) if d.value is not None]
    except DesiredStateError as e:
        return [], [e]
    if len(docs) != 1 or not isinstance(docs[0].value, Mapping) or not isinstance(docs[0].value.get("releases"), list):
        return [], [DesiredStateError("a Helm release file holds one mapping with a list 'releases'", file=file,
                                      line=docs[0].line if docs else 1)]
    doc = docs[0]
    base = posixpath.dirname(file)
    out: list[HelmRelease] = []
    errors: list[DesiredStateError] = []
    seen: dict[tuple[str, str | None], int] = {}
    for i, r in enumerate(doc.value["releases"]):
        line = _line(doc, i)

        def err(msg: str, line: int = line, i: int = i) -> None:
            errors.append(DesiredStateError(f"releases[{i}]: {msg}", file=file, line=line))

        if not isinstance(r, Mapping):
            err("must be a mapping with name and chart")
            continue
        unknown = sorted(set(map(str, r)) - _KEYS)
        if unknown:
            err(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
            continue
        name, chart = r.get("name"), r.get("chart")
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > 53:
            err("name must be a release name: lowercase letters, digits and '-', at most 53 characters")
            continue
        if not isinstance(chart, str) or not chart:
            err("chart is required (a directory in this repository, a chart name with repository, or oci://...)")
            continue
        ns = r.get("namespace")
        if ns is not None and (not isinstance(ns, str) or not _NAME.match(ns)):
            err("namespace must be a namespace name")
            continue
        repo, version = r.get("repository"), r.get("version")
        if repo is not None and (not isinstance(repo, str) or not repo.startswith(("https://", "http://"))):
            err("repository must be an http(s) URL of a chart repository")
            continue
        remote = repo is not None or chart.startswith("oci://")
        if remote and (not isinstance(version, str) or not version or any(c in version for c in "^~<>=*x ,|")):
            err("a chart from a chart repository or an OCI registry needs an exact version (version = \"1.2.3\"): "
                "a range would change what is deployed without a commit")
            continue
        if not remote and version is not None:
            err("version applies to a chart from a repository or an OCI registry; a chart in Git is versioned by Git")
            continue
        plain_http = r.get("plain_http", False)
        if not isinstance(plain_http, bool) or (plain_http and not remote):
            err("plain_http is true or false, for a chart from a repository or an OCI registry")
            continue
        if not remote:
            chart = posixpath.normpath(posixpath.join(base, chart))
            if chart.startswith("../") or chart == ".." or posixpath.isabs(chart):
                err("chart must be a directory inside this repository")
                continue
        vfiles = r.get("values_files", [])
        if not isinstance(vfiles, list) or not all(isinstance(v, str) and v for v in vfiles):
            err("values_files must be a list of file paths (relative to this file)")
            continue
        vpaths = tuple(posixpath.normpath(posixpath.join(base, v)) for v in vfiles)
        values = r.get("values", {})
        if not isinstance(values, Mapping):
            err("values must be a mapping")
            continue
        ident = (name, ns)
        if ident in seen:
            err(f"release {name} is declared twice in this file (also releases[{seen[ident]}])")
            continue
        seen[ident] = i
        out.append(HelmRelease(file, line, name, ns, chart, repo, version if remote else None, vpaths, values,
                               plain_http))
    return out, errors


def _line(doc: Any, i: int) -> int:
    # Marks stop at mappings, not list items: the line of 'releases:'; messages name releases[i].
    mark = doc.marks.get(("releases",))
    return int(mark[0]) if mark else int(doc.line)


def chart_dirs(paths: Sequence[str]) -> list[str]:
    """Directories below the environment's path that hold a Chart.yaml: never read as plain manifests."""
    return sorted({p.rpartition("/")[0] for p in paths if p.rpartition("/")[2] == CHART_FILE})


def values_hash(release: HelmRelease, values_data: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for data in values_data:
        h.update(hashlib.sha256(data).digest())
    h.update(json.dumps(release.values, sort_keys=True, default=str).encode())
    return h.hexdigest()


class HelmRenderer:
    """Runs ``helm template`` (``helm`` may be a path; looked up on PATH when rendering) with a cache."""

    def __init__(self, helm: str = "helm", *, timeout: float = DEFAULT_TIMEOUT,
                 max_output: int = DEFAULT_MAX_OUTPUT, cache_size: int = 256,
                 cache_bytes: int = 256 * 1024 * 1024) -> None:
        self.helm = helm
        self.timeout = timeout
        self.max_output = max_output
        self._cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes  # renderings can be large: bound the cache by size, not only count
        self._cached = 0
        self.renders = 0  # helm processes run (tests and benchmarks read it)

    async def render(self, release: HelmRelease, *, namespace: str, chart_digest: str,
                     chart_files: Callable[[], Awaitable[Mapping[str, bytes]]] | None,
                     values_data: Sequence[bytes], cluster: ClusterInfo) -> bytes | DesiredStateError:
        """The rendered YAML stream of one release, or the error naming its release file.

        ``chart_files`` gives the files of a local chart (paths relative to the chart directory); it is
        only called on a cache miss. ``values_data`` are the contents of ``release.values_files``.
        """
        key = (chart_digest, values_hash(release, values_data), release.name, namespace,
               cluster.kube_version, cluster.api_versions)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        exe = find_tool(self.helm) if not Path(self.helm).is_absolute() else self.helm
        if exe is None:
            return DesiredStateError(
                f"cannot render Helm release {release.name}: {self.helm!r} is not on PATH (install helm 3)",
                file=release.file, line=release.line)
        try:
            files = await chart_files() if chart_files is not None else None
        except DesiredStateError as e:  # a symlink or an oversized file in the chart
            return e
        async with private_dir("driftd-helm-") as tmp:
            argv = await anyio.to_thread.run_sync(self._prepare, tmp, exe, release, namespace, files, values_data,
                                                  cluster)
            try:
                res = await run_tool(argv, cwd=tmp, env=scrubbed_env(tmp / "home", {
                    "HELM_CACHE_HOME": str(tmp / "home/cache"), "HELM_CONFIG_HOME": str(tmp / "home/config"),
                    "HELM_DATA_HOME": str(tmp / "home/data")}), time_limit=self.timeout, max_output=self.max_output)
            except ToolFailed as e:
                return DesiredStateError(f"helm template {release.name}: {e}", file=release.file, line=release.line)
            self.renders += 1
            if res.returncode != 0:
                msg = res.stderr.decode("utf-8", "replace").strip().replace(str(tmp) + "/", "")
                return DesiredStateError(
                    f"helm template {release.name} failed: {_clip(msg) or f'exit code {res.returncode}'}",
                    file=release.file, line=release.line)
        self._cache[key] = res.stdout
        self._cached += len(res.stdout)
        while len(self._cache) > self._cache_size or (self._cached > self._cache_bytes and len(self._cache) > 1):
            self._cached -= len(self._cache.popitem(last=False)[1])
        return res.stdout

    @staticmethod
    def _prepare(tmp: Path, exe: str, release: HelmRelease, namespace: str, files: Mapping[str, bytes] | None,
                 values_data: Sequence[bytes], cluster: ClusterInfo) -> list[str]:
        argv = [exe, "template", release.name]
        if files is not None:
            write_files(files, tmp / "chart")
            argv.append(str((tmp / "chart").resolve()))
        else:
            argv.append(release.chart)
            if release.repository:
                argv += ["--repo", release.repository]
            argv += ["--version", str(release.version)]
            if release.plain_http:
                argv.append("--plain-http")
        argv += ["--namespace", namespace, "--kube-version", cluster.kube_version,
                 "--no-hooks", "--skip-tests", "--include-crds"]
        for gv in cluster.api_versions:
            argv += ["--api-versions", gv]
        vdir = tmp / "values"
        vdir.mkdir()
        for i, data in enumerate(values_data):
            p = vdir / f"{i}.yaml"
            p.write_bytes(data)
            argv += ["--values", str(p)]
        if release.values:
            p = vdir / "inline.yaml"
            p.write_text(json.dumps(release.values, default=str))  # JSON is YAML; applied last
            argv += ["--values", str(p)]
        return argv


def _clip(msg: str, n: int = 600) -> str:
    return msg if len(msg) <= n else msg[:n] + "..."
