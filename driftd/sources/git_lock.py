"""A lock on one repository cache shared by every process using it (``driftd run`` and a
``driftd check`` with the same ``state_dir``): ``fcntl.flock`` on a file in the cache directory.

The lock is held for a whole fetch (objects, then ref updates, then an occasional repack): only one
process writes a cache at a time. Readers never take it: objects are immutable and packs land by
rename, refs are replaced by rename, and dulwich rescans the pack directory when a pack disappears.
flock locks belong to the open file and are released by the kernel when the process dies, so a
``kill -9`` never leaves a cache locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import SourceError

LOCK_NAME = "driftd.lock"
_POLL = 0.05


@contextlib.contextmanager
def cache_lock(directory: Path, *, timeout: float, subject: str | None = None) -> Iterator[None]:
    """Hold the exclusive lock of the cache in ``directory`` (created if needed) for the block.

    Waits up to ``timeout`` seconds for another process's fetch to end (polling, so an abandoned
    worker thread gives up by itself), then raises a retryable SourceError naming the holder's pid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise SourceError(f"cannot open the cache lock {path}: {e.strerror or e}", subject=subject,
                          retryable=False) from e
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    raise SourceError(f"the local cache is busy: another process{holder} has been fetching "
                                      f"into it for over {timeout:g}s", subject=subject) from None
                time.sleep(_POLL)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message above, in the other process
            _remove_stale_ref_locks(directory)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
    return ""


def _remove_stale_ref_locks(directory: Path) -> None:
    """``refs/**/*.lock`` left by a process killed mid ref-update: with the cache lock held nobody else
    is writing refs, so they are stale, and dulwich would refuse to update those refs forever."""
    refs = directory / "refs"
    if refs.is_dir():
        for p in refs.rglob("*.lock"):
            with contextlib.suppress(OSError):
                p.unlink()
    packed = directory / "packed-refs.lock"
    with contextlib.suppress(OSError):
        packed.unlink()
