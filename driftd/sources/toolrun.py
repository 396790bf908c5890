"""Run an external tool (helm, sops, gpg, ssh-keygen) confined: scrubbed environment, private
working directory, time limit, bounded output. Stand-in until the shared runner lands; callers use
only :func:`run_tool` and :class:`ToolResult`, so switching is an import change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
# Passed through so a tool behind a proxy still reaches chart repositories; nothing else is inherited
# (no credentials, no KUBECONFIG, no HOME of the daemon's user).
_PASS_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "TZ", "LANG")


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class ToolFailed(Exception):
    """The tool could not be run, ran too long, or printed too much. ``str()`` says which."""


def find_tool(name: str) -> str | None:
    return shutil.which(name)


def scrubbed_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.update({"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "KUBECONFIG": os.devnull})
    env.update(extra or {})
    return env


async def run_tool(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdin: bytes | None = None,
                   time_limit: float = 60.0, max_output: int = DEFAULT_MAX_OUTPUT) -> ToolResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``; ToolFailed on timeout or when stdout exceeds
    ``max_output`` bytes (the process is killed: a template loop must not fill memory)."""
    name = Path(argv[0]).name
    out = bytearray()
    err = bytearray()
    overflow: list[int] = []

    async def drain(stream: ByteReceiveStream | None, buf: bytearray, limit: int) -> None:
        if stream is None:
            return
        async for chunk in stream:
            if len(buf) + len(chunk) > limit:
                overflow.append(limit)
                proc.kill()  # (not raise: a task group would wrap it) the other drain then sees EOF
                return
            buf.extend(chunk)

    try:
        proc = await anyio.open_process(list(argv), cwd=str(cwd), env=dict(env),
                                        stdin=-1 if stdin is not None else -3)  # PIPE / DEVNULL
    except OSError as e:
        raise ToolFailed(f"cannot run {name}: {e.strerror or e}") from e
    try:
        with anyio.fail_after(time_limit):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, proc.stdout, out, max_output)
                tg.start_soon(drain, proc.stderr, err, 1024 * 1024)
                if stdin is not None and proc.stdin is not None:
                    await proc.stdin.send(stdin)
                    await proc.stdin.aclose()
            code = await proc.wait()
    except TimeoutError:
        raise ToolFailed(f"{name} did not finish within {time_limit:g}s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.wait()
        await proc.aclose()
    if overflow:
        raise ToolFailed(f"{name} printed more than {overflow[0]:,} bytes")
    return ToolResult(code, bytes(out), bytes(err))
