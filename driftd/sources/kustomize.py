"""Render kustomizations with ``kubectl kustomize``, from blobs of a tree, without a checkout.

The files below the environment's path are written to a private temporary
directory (so overlays can reach bases next to them), ``kubectl kustomize DIR``
runs there with a timeout, and the directory is removed. Remote bases
(``https://...``/``github.com/...``) are fetched by kubectl itself; the timeout
bounds them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from ..errors import DesiredStateError

DEFAULT_TIMEOUT = 60.0


class Kustomizer:
    """Runs ``kubectl kustomize``. ``kubectl`` may be a path; it is looked up on PATH when rendering."""

    def __init__(self, kubectl: str = "kubectl", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.kubectl = kubectl
        self.timeout = timeout

    async def render(self, files: Mapping[str, bytes],
                     kustomization_files: Sequence[str]) -> dict[str, bytes | DesiredStateError]:
        """kustomization file path -> rendered YAML stream, or the error naming the kustomization."""
        out: dict[str, bytes | DesiredStateError] = {}
        if not kustomization_files:
            return out
        exe = shutil.which(self.kubectl)
        if exe is None:
            for k in kustomization_files:
                out[k] = DesiredStateError(
                    f"cannot render this kustomization: {self.kubectl!r} is not on PATH "
                    "(install kubectl, or declare plain manifests without kustomization.yaml)", file=k)
            return out
        tmp = await anyio.to_thread.run_sync(_materialize, files)
        try:
            for k in kustomization_files:
                out[k] = await self._run(exe, tmp, k)
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
        return out

    async def _run(self, exe: str, root: Path, kfile: str) -> bytes | DesiredStateError:
        d = kfile.rpartition("/")[0]
        try:
            with anyio.fail_after(self.timeout):
                proc = await anyio.run_process([exe, "kustomize", str(root / d) if d else str(root)],
                                               check=False, env={**os.environ, "KUBECONFIG": os.devnull})
        except TimeoutError:
            return DesiredStateError(f"kubectl kustomize did not finish within {self.timeout:g}s", file=kfile)
        except OSError as e:
            return DesiredStateError(f"cannot run kubectl kustomize: {e}", file=kfile)
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().replace(str(root) + "/", "")
            return DesiredStateError(f"kubectl kustomize failed: {msg or f'exit code {proc.returncode}'}",
                                     file=kfile)
        return bytes(proc.stdout)


def _materialize(files: Mapping[str, bytes]) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="driftd-kustomize-"))
    for path, data in files.items():
        target = (tmp / path).resolve()
        if not target.is_relative_to(tmp.resolve()):  # tree paths never contain '..', but be sure
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return tmp
