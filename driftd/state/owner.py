"""Which process a write intent belongs to, and whether that process still runs.

An intent left open is ``interrupted`` only once its own process is gone: a ``driftd sync`` running
beside the daemon keeps its intents, and their real outcomes, when the daemon starts. The token is
``host:pid:start`` (the process's start time in clock ticks since boot, from ``/proc``), so a pid
reused by another process after a crash does not pass for the writer.
"""

from __future__ import annotations

import os
import socket
from functools import cache


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces and parentheses.
    return stat.rpartition(")")[2].split()[19]


@cache
def token() -> str:
    """This process's owner token (fixed for its lifetime)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '0'}"


def alive(owner: str | None) -> bool | None:
    """True while ``owner`` runs, False once it does not; None when this host cannot tell (another
    host's process: the state store on a shared disk)."""
    if not owner:
        return False  # written before intents had owners: only a process that has since stopped did that
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return token() == owner
    now = _start_time(pid)
    if now is None:
        return False
    return start in ("0", now)
