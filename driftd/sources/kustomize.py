"""Render kustomizations with ``kubectl kustomize``, from blobs of a tree, without a checkout.

The files below the environment's path are written to a private temporary directory (so overlays
can reach bases next to them) and ``kubectl kustomize DIR`` runs there through the confined runner
(:mod:`tools`: scrubbed environment, no service HOME, time limit, bounded output).

Confinement, checked before kubectl runs (:func:`confinement_problem`): every path a kustomization
names (resources, bases, components, patches, generators' files, ...), and every kustomization it
reaches that way, must resolve to a file or directory of the environment's tree: no absolute path,
no ``..`` out of it, nothing that is not in the tree (kustomize would try a missing local path as a
remote URL). Git symlinks never reach the temporary copy (the tree reader refuses them). Remote
bases (``https://...``, ``github.com/...``, ``git@...``) are refused unless the environment sets
``allow_remote_bases``; kubectl then fetches them itself, bounded by the time limit.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ..errors import DesiredStateError
from .manifests import KUSTOMIZATION_FILES, parse_file
from .tools import ToolFailed, find_tool, private_dir, run_tool, scrubbed_env, write_files

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024

# A kustomization entry kustomize would fetch instead of reading from disk.
_REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@|git::|github\.com/|gitlab\.com/|bitbucket\.org/)", re.I)


@dataclass(frozen=True)
class _Ref:
    key: str  # "resources[2]", "patches[0].path", "configMapGenerator[1].files[0]"
    value: str
    kustomization_ref: bool  # may name a directory holding another kustomization


def _refs(doc: Mapping[str, Any]) -> Iterable[_Ref]:
    """Every path-valued entry of a kustomization, by the field it is in."""
    def strings(key: str, *, kdir: bool = False) -> Iterable[_Ref]:
        v = doc.get(key)
        for i, x in enumerate(v if isinstance(v, list) else ()):
            # a string holding a newline (or a mapping) is an inline patch or plugin config, not a path
            if isinstance(x, str) and "\n" not in x:
                yield _Ref(f"{key}[{i}]", x, kdir)

    yield from strings("resources", kdir=True)
    yield from strings("bases", kdir=True)
    yield from strings("components", kdir=True)
    for key in ("crds", "configurations", "patchesStrategicMerge", "generators", "transformers", "validators"):
        yield from strings(key, kdir=key in ("generators", "transformers", "validators"))
    for key in ("patches", "patchesJson6902", "replacements"):
        v = doc.get(key)
        for i, x in enumerate(v if isinstance(v, list) else ()):
            if isinstance(x, Mapping) and isinstance(x.get("path"), str):
                yield _Ref(f"{key}[{i}].path", x["path"], False)
    openapi = doc.get("openapi")
    if isinstance(openapi, Mapping) and isinstance(openapi.get("path"), str):
        yield _Ref("openapi.path", openapi["path"], False)
    for key in ("configMapGenerator", "secretGenerator"):
        v = doc.get(key)
        for i, gen in enumerate(v if isinstance(v, list) else ()):
            if not isinstance(gen, Mapping):
                continue
            for j, f in enumerate(gen.get("files") or ()):
                if isinstance(f, str):  # "path" or "key=path"
                    yield _Ref(f"{key}[{i}].files[{j}]", f.partition("=")[2] if "=" in f else f, False)
            for j, f in enumerate(gen.get("envs") or ()):
                if isinstance(f, str):
                    yield _Ref(f"{key}[{i}].envs[{j}]", f, False)
            if isinstance(gen.get("env"), str):
                yield _Ref(f"{key}[{i}].env", gen["env"], False)
    globals_ = doc.get("helmGlobals")
    if isinstance(globals_, Mapping) and isinstance(globals_.get("chartHome"), str):
        yield _Ref("helmGlobals.chartHome", globals_["chartHome"], False)
    charts = doc.get("helmCharts")
    for i, c in enumerate(charts if isinstance(charts, list) else ()):
        if isinstance(c, Mapping):
            if isinstance(c.get("valuesFile"), str):
                yield _Ref(f"helmCharts[{i}].valuesFile", c["valuesFile"], False)
            for j, f in enumerate(c.get("additionalValuesFiles") or ()):
                if isinstance(f, str):
                    yield _Ref(f"helmCharts[{i}].additionalValuesFiles[{j}]", f, False)


def is_remote(entry: str) -> bool:
    return bool(_REMOTE.match(entry.strip()))


def _inside(path: str, root: str) -> bool:
    return not root or path == root or path.startswith(root + "/")


def confinement_problem(kfile: str, files: Mapping[str, bytes], tree: Iterable[str], *, root: str = "",
                        allow_remote: bool = False) -> DesiredStateError | None:
    """The first path of ``kfile`` (or of a kustomization it reaches) that leaves the environment's tree,
    or None. ``tree`` is every file path of the environment's tree (below ``root``, the environment's
    path in the repository); ``files`` has the kustomizations' bytes."""
    paths = {p for p in (*tree, *files) if _inside(p, root)}
    dirs = {root}
    for p in paths:
        d = posixpath.dirname(p)
        while d not in dirs and _inside(d, root):
            dirs.add(d)
            d = posixpath.dirname(d)
    seen: set[str] = set()
    todo = [kfile]
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        parsed = parse_file(files.get(k, b""), k)
        if parsed.error is not None:
            return parsed.error
        doc = parsed.documents[0].value if parsed.documents else None
        if not isinstance(doc, Mapping):
            return DesiredStateError("a kustomization must be a mapping", file=k, line=1)
        base = posixpath.dirname(k)
        for ref in _refs(doc):
            entry = ref.value.strip()
            where = f"{ref.key} {ref.value!r}"
            if is_remote(entry):
                if allow_remote and ref.kustomization_ref:
                    continue
                return DesiredStateError(
                    f"{where}: remote bases are refused (kubectl would fetch them from the network); set "
                    "allow_remote_bases = true in this environment's [environments.kubernetes] to allow them",
                    file=k)
            if entry.startswith("/") or entry.startswith("~"):
                return DesiredStateError(f"{where}: absolute paths are refused: name a path relative to the "
                                         "kustomization, inside the environment's directory", file=k)
            target = posixpath.normpath(posixpath.join(base, entry))
            target = "" if target == "." else target
            if target == ".." or target.startswith("../") or not _inside(target, root):
                return DesiredStateError(
                    f"{where}: leaves the environment's directory ({root or '/'}); a kustomization may only name "
                    "files and directories of its environment's tree", file=k)
            if target not in paths and target not in dirs:
                return DesiredStateError(
                    f"{where}: {target} does not exist in the environment's tree (kustomize would try a missing "
                    "path as a remote URL)", file=k)
            if ref.kustomization_ref and target in dirs:
                todo.extend(f"{target}/{name}" if target else name for name in KUSTOMIZATION_FILES
                            if (f"{target}/{name}" if target else name) in files)
    return None


class Kustomizer:
    """Runs ``kubectl kustomize``. ``kubectl`` may be a path; it is looked up on PATH when rendering."""

    def __init__(self, kubectl: str = "kubectl", timeout: float = DEFAULT_TIMEOUT,
                 max_output: int = DEFAULT_MAX_OUTPUT) -> None:
        self.kubectl = kubectl
        self.timeout = timeout
        self.max_output = max_output

    async def render(self, files: Mapping[str, bytes], kustomization_files: Sequence[str], *,
                     tree: Iterable[str] | None = None, root: str = "", allow_remote: bool = False
                     ) -> dict[str, bytes | DesiredStateError]:
        """kustomization file path -> rendered YAML stream, or the error naming the kustomization.

        ``tree`` lists every file of the environment's tree (default: ``files``' paths), ``root`` is its
        path in the repository; a kustomization naming anything outside it is refused without running
        kubectl."""
        out: dict[str, bytes | DesiredStateError] = {}
        if not kustomization_files:
            return out
        tree_paths = list(tree) if tree is not None else list(files)
        todo = []
        for k in kustomization_files:
            problem = confinement_problem(k, files, tree_paths, root=root, allow_remote=allow_remote)
            if problem is not None:
                out[k] = problem
            else:
                todo.append(k)
        if not todo:
            return out
        exe = find_tool(self.kubectl)
        if exe is None:
            for k in todo:
                out[k] = DesiredStateError(
                    f"cannot render this kustomization: {self.kubectl!r} is not on PATH "
                    "(install kubectl, or declare plain manifests without kustomization.yaml)", file=k)
            return out
        async with private_dir("driftd-kustomize-") as tmp:
            copy = tmp / "tree"
            await anyio.to_thread.run_sync(write_files, files, copy)
            extra = {} if allow_remote else {"GIT_ALLOW_PROTOCOL": "driftd-no-remote-bases"}
            env = scrubbed_env(tmp / "home", extra)
            for k in todo:
                out[k] = await self._run(exe, copy, k, env)
        return out

    async def _run(self, exe: str, root: Path, kfile: str, env: Mapping[str, str]) -> bytes | DesiredStateError:
        d = kfile.rpartition("/")[0]
        try:
            res = await run_tool([exe, "kustomize", str(root / d) if d else str(root)], cwd=root.parent, env=env,
                                 time_limit=self.timeout, max_output=self.max_output)
        except ToolFailed as e:
            return DesiredStateError(f"kubectl kustomize: {e}", file=kfile)
        if res.returncode != 0:
            msg = res.stderr.decode("utf-8", "replace").strip().replace(str(root) + "/", "")
            return DesiredStateError(f"kubectl kustomize failed: {msg or f'exit code {res.returncode}'}",
                                     file=kfile)
        return res.stdout

