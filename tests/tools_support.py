"""External tools for the Helm, SOPS and signed-commit tests: helm and sops built by
tests/sandbox/build-tools.sh (cached in ~/.cache/driftd-tools), age/gpg/ssh-keygen from the system
(scripts/system-deps.sh), and a local Git repository driven with the git CLI."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path

from driftd.config import EnvironmentSettings, KubernetesEnvSettings, RepositorySettings
from driftd.sources.git import RepositoryCache

ROOT = Path(__file__).resolve().parent.parent
CORPUS_HELM = ROOT.parent / "shared" / "corpus" / "helm"  # next to the checkout (../shared), as in CI
if not CORPUS_HELM.is_dir():
    CORPUS_HELM = Path("/work/shared/corpus/helm")


@functools.cache
def tools_dir() -> Path:
    """The directory holding helm and sops (built once, then cached outside the checkout)."""
    out = subprocess.run(["bash", str(ROOT / "tests" / "sandbox" / "build-tools.sh")], capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"build-tools.sh failed: {out.stderr[-2000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def helm() -> str:
    return str(tools_dir() / "helm")


def sops() -> str:
    return str(tools_dir() / "sops")


def system_tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} is not installed: run scripts/system-deps.sh")
    return exe


class Work:
    """A working clone of a bare repository, driven with the git CLI the way a person pushes."""

    def __init__(self, root: Path) -> None:
        self.bare = root / f"repo-{uuid.uuid4().hex[:6]}.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        self.dir = root / f"work-{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        self.git("init", "-q", "-b", "main", str(self.dir), cwd=root)
        self.git("remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return str(self.bare)

    def git(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input_text: str | None = None) -> str:
        out = subprocess.run(["git", *args], cwd=cwd or self.dir, env={**self.env, **(env or {})},
                             capture_output=True, text=True, input=input_text)
        if out.returncode:
            raise AssertionError(f"git {shlex.join(args)}: {out.stderr}")
        return out.stdout.strip()

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for path, data in files.items():
            p = self.dir / path
            if data is None:
                p.unlink(missing_ok=True)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data.encode() if isinstance(data, str) else data)

    def copy(self, src: Path, dest: str) -> None:
        shutil.copytree(src, self.dir / dest, dirs_exist_ok=True)

    def commit(self, files: dict[str, str | bytes | None] | None = None, *, sign: list[str] | None = None,
               env: dict[str, str] | None = None, message: str = "change") -> str:
        """Commit everything and push main. ``sign``: ``git -c`` settings, and ``-S`` to sign (``env``: for gpg)."""
        self.write(files or {})
        self.git("add", "-A")
        extra = [a for kv in (sign or []) for a in ("-c", kv)]
        self.git(*extra, "commit", "-q", "--allow-empty", *(["-S"] if sign is not None else []), "-m", message,
                 env=env)
        self.git("push", "-q", "-f", "origin", "main")
        return self.git("rev-parse", "HEAD")


def env_settings(name: str = "e", *, path: str = "k8s", namespace: str = "apps", **kw: object) -> EnvironmentSettings:
    return EnvironmentSettings(name=name, repository="envs", branch="main",
                               kubernetes=KubernetesEnvSettings(cluster="c", path=path, namespace=namespace),
                               **kw)  # type: ignore[arg-type]


def cache_for(work: Work, tmp: Path) -> RepositoryCache:
    return RepositoryCache(RepositorySettings(name="envs", url=work.url, timeout=30.0), tmp / "state")
