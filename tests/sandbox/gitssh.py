"""Git over SSH: a real SSH server (asyncssh) that runs only git-upload-pack / git-receive-pack.

Run as a script (the sandbox starts it detached): ``python gitssh.py PORT GIT_ROOT KEY_DIR``.
KEY_DIR comes from :func:`make_keys`: the server's host key, ``authorized_keys`` with the one
client key (ed25519), and the client's ``id_ed25519`` plus a ``known_hosts`` naming this server.
Authentication is public key only. A session may run exactly ``git-upload-pack '<path>'`` or
``git-receive-pack '<path>'`` with the path inside GIT_ROOT; anything else (a shell, another
command, a path escaping GIT_ROOT) is refused with a message on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

import asyncssh

GIT_COMMANDS = ("git-upload-pack", "git-receive-pack")
HOST_KEY, CLIENT_KEY, AUTHORIZED_KEYS, KNOWN_HOSTS = "host_key", "id_ed25519", "authorized_keys", "known_hosts"


def make_keys(key_dir: Path, port: int) -> tuple[Path, Path]:
    """Write a fresh host key, client key pair, authorized_keys and known_hosts into key_dir.
    Returns (client private key, known_hosts)."""
    key_dir.mkdir(parents=True, exist_ok=True)
    host = asyncssh.generate_private_key("ssh-ed25519")
    client = asyncssh.generate_private_key("ssh-ed25519", comment="driftd-sandbox")
    for name, key in ((HOST_KEY, host), (CLIENT_KEY, client)):
        p = key_dir / name
        p.touch(mode=0o600)
        p.write_bytes(key.export_private_key("openssh"))
    (key_dir / (CLIENT_KEY + ".pub")).write_bytes(client.export_public_key("openssh"))
    (key_dir / AUTHORIZED_KEYS).write_bytes(client.export_public_key("openssh"))
    known = key_dir / KNOWN_HOSTS
    known.write_bytes(f"[127.0.0.1]:{port} ".encode() + host.export_public_key("openssh"))
    return key_dir / CLIENT_KEY, known


def resolve_command(command: str | None, git_root: Path) -> tuple[list[str], str | None]:
    """The argv to run for an exec request, or ([], reason) when it is refused."""
    if not command:
        return [], "interactive sessions are not allowed; only git-upload-pack/git-receive-pack"
    try:
        words = shlex.split(command)
    except ValueError:
        return [], "unparsable command"
    if len(words) != 2 or words[0] not in GIT_COMMANDS:
        return [], f"command not allowed: only {' / '.join(GIT_COMMANDS)} '<path>'"
    rel = words[1].lstrip("/")
    if rel.startswith("~"):
        rel = rel.lstrip("~").lstrip("/")
    root = git_root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        return [], "path outside the served directory"
    if not target.is_dir():
        return [], f"no repository at {words[1]}"
    return [words[0], str(target)], None


async def _session(process: asyncssh.SSHServerProcess[bytes], git_root: Path) -> None:
    argv, refused = resolve_command(process.command, git_root)
    if refused is not None:
        sys.stderr.write(f"refused {process.command!r}: {refused}\n")
        process.stderr.write(f"fatal: {refused}\n".encode())
        process.exit(1)
        return
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(git_root)}
    proto = (process.env or {}).get("GIT_PROTOCOL")
    if isinstance(proto, str | bytes):
        env["GIT_PROTOCOL"] = proto.decode() if isinstance(proto, bytes) else proto
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None

    git_in = proc.stdin

    async def pump_in() -> None:
        # The client's stdin -> git; EOF closes git's stdin (receive-pack waits for it).
        try:
            while chunk := await process.stdin.read(65536):
                git_in.write(chunk)
                await git_in.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
            pass
        finally:
            git_in.close()

    async def pump_out(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()

    feeder = asyncio.create_task(pump_in())
    # Every byte git wrote is forwarded before the exit status goes out.
    await asyncio.gather(pump_out(proc.stdout, process.stdout), pump_out(proc.stderr, process.stderr))
    code = await proc.wait()
    feeder.cancel()
    sys.stderr.write(f"{argv[0]} {argv[1]} exit {code}\n")
    process.exit(code)


async def serve(port: int, git_root: Path, key_dir: Path) -> None:
    async def handler(process: asyncssh.SSHServerProcess[bytes]) -> None:
        try:
            await _session(process, git_root)
        except Exception as e:  # one broken session must not stop the server
            sys.stderr.write(f"session failed: {type(e).__name__}: {e}\n")
            process.exit(255)

    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        "127.0.0.1",
        port,
        server_host_keys=[str(key_dir / HOST_KEY)],
        authorized_client_keys=str(key_dir / AUTHORIZED_KEYS),
        password_auth=False,
        kbdint_auth=False,
        process_factory=handler,
        encoding=None,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
        reuse_address=True,
    )
    async with server:
        await asyncio.Event().wait()  # until SIGTERM


def main(argv: list[str]) -> None:
    port, root, keys = int(argv[1]), Path(argv[2]), Path(argv[3])
    asyncio.run(serve(port, root, keys))


if __name__ == "__main__":
    main(sys.argv)
