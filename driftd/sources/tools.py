"""Run an external tool (kubectl kustomize, helm, sops, gpg) confined.

What a tool run from driftd gets, and nothing more:

- an environment built from scratch (:func:`scrubbed_env`): PATH, a HOME inside the run's private
  directory, ``KUBECONFIG=/dev/null``, the proxy and locale variables, and what the caller adds on
  purpose. No ``AWS_*``, no tokens, no ``KUBECONFIG``, not the service's HOME (its ~/.kube,
  ~/.aws, ~/.gitconfig, ~/.ssh stay out of reach);
- a private working directory (:func:`private_dir`, mode 0700, removed afterwards), holding only the
  files the tool is given (:func:`write_files`);
- a time limit, after which its whole process group is killed (kustomize runs git, helm runs
  plugins: killing only the direct child would leave them running);
- bounded output: stdout beyond ``max_output`` or stderr beyond ``max_stderr`` kills it.

Errors are :class:`ToolFailed` (could not run, too slow, too much output); a non-zero exit is a
:class:`ToolResult` for the caller to word.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
DEFAULT_MAX_STDERR = 1024 * 1024
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Passed through so a tool behind a proxy still reaches what it must; nothing else is inherited.
PASS_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "TZ", "LANG", "LC_ALL")


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class ToolFailed(Exception):
    """The tool could not be run, ran too long, or printed too much. ``str()`` says which."""


def find_tool(name: str) -> str | None:
    """``name`` as a path, or looked up on the daemon's PATH (the tool itself runs with :data:`SAFE_PATH`
    plus the directory it was found in)."""
    return shutil.which(name)


def scrubbed_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A fresh environment: nothing of the daemon's but :data:`PASS_ENV`, HOME set to ``home``."""
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.update({"HOME": str(home), "PATH": SAFE_PATH, "KUBECONFIG": os.devnull,
                # git (run by kustomize for remote bases, by helm for plugins) reads no system or user config
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"})
    env.update(extra or {})
    return env


@contextlib.asynccontextmanager
async def private_dir(prefix: str = "driftd-tool-") -> AsyncIterator[Path]:
    """A fresh 0700 directory (with an empty ``home/`` for HOME), removed on exit. Made and removed in a
    worker thread: a chart or a kustomize tree may be thousands of files, too many to delete on the event loop."""

    def make() -> Path:
        tmp = Path(tempfile.mkdtemp(prefix=prefix))
        (tmp / "home").mkdir(mode=0o700)
        return tmp

    tmp = await anyio.to_thread.run_sync(make)
    try:
        yield tmp
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))


def write_files(files: Mapping[str, bytes], root: Path) -> None:
    """Write a tree read from Git (relative path -> content) under a new 0700 directory ``root``, never
    outside it. Blocking: call it in a worker thread."""
    root.mkdir(mode=0o700)
    top = root.resolve()
    for path, data in files.items():
        target = (root / path).resolve()
        if not target.is_relative_to(top):  # tree paths never contain '..', but be sure
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_tool(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
                   stdin: bytes | None = None, time_limit: float = 60.0, max_output: int = DEFAULT_MAX_OUTPUT,
                   max_stderr: int = DEFAULT_MAX_STDERR) -> ToolResult:
    """Run ``argv`` in ``cwd`` with exactly ``env`` (default: :func:`scrubbed_env` with HOME ``cwd/home``),
    in a session of its own. ToolFailed on timeout or when an output exceeds its bound (the process
    group is killed: a template loop must not fill memory, a hung git clone must not linger)."""
    name = Path(argv[0]).name
    if env is None:
        env = scrubbed_env(cwd / "home")
    out = bytearray()
    err = bytearray()
    overflow: list[str] = []

    async def drain(stream: ByteReceiveStream | None, buf: bytearray, limit: int, what: str) -> None:
        if stream is None:
            return
        async for chunk in stream:
            if len(buf) + len(chunk) > limit:
                overflow.append(f"{name} printed more than {limit:,} bytes on {what}")
                _kill_group(proc.pid)  # (not raise: a task group would wrap it) the other drain then sees EOF
                return
            buf.extend(chunk)

    try:
        proc = await anyio.open_process(list(argv), cwd=str(cwd), env=dict(env), start_new_session=True,
                                        stdin=-1 if stdin is not None else -3)  # PIPE / DEVNULL
    except OSError as e:
        raise ToolFailed(f"cannot run {name}: {e.strerror or e}") from e
    try:
        with anyio.fail_after(time_limit):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, proc.stdout, out, max_output, "stdout")
                tg.start_soon(drain, proc.stderr, err, max_stderr, "stderr")
                if stdin is not None and proc.stdin is not None:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await proc.stdin.send(stdin)
                        await proc.stdin.aclose()
            code = await proc.wait()
    except TimeoutError:
        raise ToolFailed(f"{name} did not finish within {time_limit:g}s") from None
    finally:
        # Whatever happened, nothing the tool started outlives the call.
        _kill_group(proc.pid)
        if proc.returncode is None:
            with anyio.CancelScope(shield=True):
                await proc.wait()
        await proc.aclose()
    if overflow:
        raise ToolFailed(overflow[0])
    return ToolResult(code, bytes(out), bytes(err))
