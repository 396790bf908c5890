"""One ``driftd run`` per state directory: an exclusive ``flock`` on ``<state_dir>/daemon.lock``.

Two daemons on one state_dir would both revert, both deliver alerts from one outbox and interleave
their audit trails. The lock belongs to the open file, so the kernel releases it when the process
dies however it dies (``kill -9`` included): a stale lock file never blocks a restart. The holder
writes its pid into the file, so a second daemon can name it. ``driftd check`` takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .schema import StateError

LOCK_NAME = "daemon.lock"


class StateDirLocked(StateError):
    """Another process holds the state directory. Retrying helps only once that process has stopped."""

    def __init__(self, message: str, *, subject: str, holder: int | None) -> None:
        super().__init__(message, subject=subject, retryable=False)
        self.holder = holder


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Hold ``state_dir``'s daemon lock for the block; StateDirLocked names the pid holding it."""
    path = state_dir / LOCK_NAME
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StateError(f"cannot create the lock file {path}: {e.strerror or e}; driftd run needs a "
                         "writable daemon.state_dir", subject=str(state_dir), retryable=False) from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            who = f"pid {holder}" if holder else "another process"
            raise StateDirLocked(f"daemon.state_dir {state_dir} is in use by another driftd run ({who}); "
                                 "one daemon per state directory", subject=str(state_dir), holder=holder) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
