"""Audit before act: a durable intent record before every write to a live system, its outcome after.

Every write driftd makes (a Kubernetes apply, patch or delete, every AWS call that changes
something, every Git push) runs inside :func:`journaled`. It records the intent and waits until the
record is committed, then writes, then records the outcome. Both records are shielded from
cancellation: a reconcile deadline or SIGTERM may cut the write short, never its bookkeeping. A
process killed between the two leaves an intent without an outcome; the next start marks it
``interrupted`` (the state store does) and the first pass re-checks the object.

If the intent cannot be recorded (the state store is unwritable, its disk full) the write is not
made: :class:`JournalUnavailable`, retryable. Acting without a record is what this prevents.

The journal is found through a context variable, set by the engine around a revert
(:func:`use`): targets call :func:`journaled` without knowing the state store (the layering puts
the store above the targets), and code outside a revert (``driftd check``, dry runs) has none.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import anyio

from .errors import DriftdError


class Outcome(StrEnum):
    DONE = "done"  # the server accepted the write
    FAILED = "failed"  # the server refused it, or it never got there (an error before an answer)
    CANCELLED = "cancelled"  # cut short by a deadline or shutdown: it may or may not have reached the server
    INTERRUPTED = "interrupted"  # the process died with the write in flight (marked at the next start)


@dataclass(frozen=True)
class Intent:
    env: str
    target: str  # kubernetes | aws | git
    subject: str  # the object (ResourceKey as text), AWS resource, or repository/branch
    operation: str  # "PATCH /api/v1/namespaces/x/configmaps/y", "ssm:put_parameter", "push refs/heads/main"
    revision: str | None = None
    actor: str = "driftd"


class WriteJournal(Protocol):
    """Implemented by the state store. ``begin`` returns only once the intent is committed."""

    async def begin_write(self, intent: Intent) -> int: ...

    async def end_write(self, intent_id: int, outcome: Outcome, reason: str | None = None) -> None: ...


class JournalUnavailable(DriftdError):
    """The intent could not be recorded, so the write was not made."""

    retryable = True


@dataclass(frozen=True)
class _Context:
    journal: WriteJournal
    env: str
    revision: str | None
    actor: str


_current: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("driftd_journal", default=None)


@contextlib.contextmanager
def use(journal: WriteJournal | None, *, env: str, revision: str | None, actor: str = "driftd") -> Iterator[None]:
    """Journal the writes made in this block (and the tasks it starts) for environment ``env``."""
    token = _current.set(_Context(journal, env, revision, actor) if journal is not None else None)
    try:
        yield
    finally:
        _current.reset(token)


def active() -> bool:
    return _current.get() is not None


@dataclass
class Note:
    """What the block may add to its DONE outcome (e.g. "nothing to push": no write was needed)."""

    reason: str | None = None


@contextlib.asynccontextmanager
async def journaled(target: str, subject: str, operation: str) -> AsyncIterator[Note]:
    """Record the intent (committed) before the block, the outcome after it. Without a journal in
    context the block just runs."""
    note = Note()
    ctx = _current.get()
    if ctx is None:
        yield note
        return
    intent = Intent(ctx.env, target, subject, operation, ctx.revision, ctx.actor)
    with anyio.CancelScope(shield=True):
        try:
            intent_id = await ctx.journal.begin_write(intent)
        except Exception as e:
            raise JournalUnavailable(f"not written: cannot record the intent to {operation} ({e})",
                                     subject=subject) from e
    try:
        yield note
    except BaseException as e:
        outcome = Outcome.CANCELLED if isinstance(e, anyio.get_cancelled_exc_class()) else Outcome.FAILED
        reason = "cancelled (deadline or shutdown): may or may not have reached the server" \
            if outcome is Outcome.CANCELLED else f"{type(e).__name__}: {e}"
        await _end(ctx, intent_id, outcome, reason[:2000])
        raise
    await _end(ctx, intent_id, Outcome.DONE, note.reason)


async def _end(ctx: _Context, intent_id: int, outcome: Outcome, reason: str | None) -> None:
    with anyio.CancelScope(shield=True):
        # The write happened (or not) whatever happens here: a failure to record the outcome leaves
        # the intent open, and the next start marks it interrupted. Never raise over the write's result.
        with contextlib.suppress(Exception):
            await ctx.journal.end_write(intent_id, outcome, reason)
