"""SQLite state: open drifts, the audit trail, inventories and key/value cursors.

One writer task owns the only writing connection; every write is a function queued to it. The
writer takes whatever is queued (group commit), runs each in a SAVEPOINT inside one transaction
and commits before any caller hears back, so "recorded" always means "committed".

Durability: WAL with ``synchronous=FULL``. ``NORMAL`` would already survive ``kill -9`` (a
committed WAL frame is in the OS page cache), but an audit trail should also survive a power cut
or a kernel panic, and group commit makes the extra fsync per batch, not per event, cheap.
A crash never leaves half a pass: each pass is one transaction.

Reads use a small pool of separate connections (WAL readers never block the writer).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..journal import Intent, Outcome
from ..log import get_logger
from ..model import Action, Drift, DriftKind, Pause, ResourceKey, TargetKind
from . import owner, pauses, queries
from .records import (
    AuditEvent,
    EventKind,
    OpenDrift,
    WriteRecord,
    dump_changes,
    dump_keys,
    key_cols,
    ts,
)
from .schema import StateError, migrate

T = TypeVar("T")
log = get_logger("driftd.state")

DB_NAME = "driftd.db"
_BATCH = 256


def db_path(state_dir: Path) -> Path:
    return state_dir / DB_NAME


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes, even where the directory is read-only (a CI user, a read-only
    mount): ``mode=ro``, and when SQLite cannot create the WAL index there, ``immutable=1`` (no
    daemon can be writing a database nobody may write)."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA busy_timeout = 30000")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    return conn


@dataclass
class _Op(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: T | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class PassOutcome:
    opened: tuple[ResourceKey, ...] = ()
    resolved: tuple[ResourceKey, ...] = ()
    events: int = 0


class StateStore:
    """Use as ``async with StateStore.open(state_dir) as store``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer_conn: sqlite3.Connection | None = None
        self._send: MemoryObjectSendStream[_Op[Any]]
        self._recv: MemoryObjectReceiveStream[_Op[Any]]
        self._send, self._recv = anyio.create_memory_object_stream[_Op[Any]](max_buffer_size=10_000)
        self._readers: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._readonly = False

    @classmethod
    @asynccontextmanager
    async def open(cls, state_dir: Path, *, readonly: bool = False) -> AsyncIterator[StateStore]:
        """``readonly``: reads only, no writer, no migration, nothing created (``driftd check``);
        every write raises StateError."""
        store = cls(db_path(state_dir))
        if readonly:
            store._readonly = True
            store._closed = True
            store._send.close()
            store._recv.close()
            try:
                await anyio.to_thread.run_sync(store._read_sync, lambda c: c.execute("PRAGMA user_version").fetchone())
            except sqlite3.Error as e:
                store._close_all()
                raise StateError(f"cannot read the state database: {e}", subject=str(store.path)) from e
            try:
                yield store
            finally:
                store._close_all()
            return
        try:
            await anyio.to_thread.run_sync(store._open_writer, state_dir)
        except BaseException:
            store._send.close()
            store._recv.close()
            raise
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store._writer)
                try:
                    yield store
                finally:
                    store._closed = True
                    store._send.close()  # the writer drains what is queued, then stops
        finally:
            store._close_all()

    # --- writer ----------------------------------------------------------------------------

    def _open_writer(self, state_dir: Path) -> None:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
            migrate(conn, str(self.path))
        except sqlite3.Error as e:
            raise StateError(f"cannot open the state database: {e}", subject=str(self.path)) from e
        except OSError as e:
            raise StateError(f"cannot create the state directory: {e.strerror or e}", subject=str(state_dir)) from e
        self._writer_conn = conn

    async def _writer(self) -> None:
        async with self._recv:
            async for op in self._recv:
                batch: list[_Op[Any]] = [op]
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._recv.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # A started commit always completes: cancellation waits for it.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._run_batch, batch)
                for o in batch:
                    o.done.set()

    def _run_batch(self, batch: list[_Op[Any]]) -> None:
        conn = self._writer_conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.fn(conn)
                    conn.execute("RELEASE op")
                except Exception as e:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    op.error = e
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for op in batch:
                op.error = op.error or e

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            why = "opened read-only" if self._readonly else "closed"
            raise StateError(f"the state store is {why}", subject=str(self.path))
        op: _Op[T] = _Op(fn)
        await self._send.send(op)
        await op.done.wait()
        if op.error is not None:
            raise StateError(f"write failed: {op.error}", subject=str(self.path)) from op.error
        return op.result  # type: ignore[return-value]

    # --- readers ---------------------------------------------------------------------------

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = connect_readonly(self.path) if self._readonly else connect(self.path, readonly=True)
            with self._lock:
                self._all_readers.append(conn)
        try:
            return fn(conn)
        except sqlite3.Error as e:
            # A damaged or locked file: a StateError the engine reports per environment and retries, never a
            # raw sqlite error escaping a pass (or `driftd check`) as a traceback.
            raise StateError(f"cannot read the state database: {e}", subject=str(self.path), retryable=True) from e
        finally:
            with self._lock:
                self._readers.append(conn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._read_sync, fn)

    def _close_all(self) -> None:
        with self._lock:
            for c in self._all_readers:
                c.close()
            self._all_readers.clear()
            self._readers.clear()
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    # --- API: writes -----------------------------------------------------------------------

    async def record_pass(self, env: str, target: TargetKind, revision: str | None, now: datetime,
                          drifts: Sequence[Drift], *, scope: frozenset[ResourceKey] | None = None,
                          events: Sequence[AuditEvent] = (),
                          inventory: frozenset[ResourceKey] | None = None, actor: str = "driftd") -> PassOutcome:
        """Record one check of ``target`` in ``env``, atomically.

        ``drifts`` are every drift seen in ``scope`` (None: the whole target), with their actions
        set. New drifts are opened (``detected``), open ones in scope that are gone are resolved,
        actions become events (a repeated skip for the same reason is recorded once), and
        ``events`` (brakes) are appended. ``inventory`` replaces the target's inventory when given.
        ``actor`` is who acted: ``driftd`` (the daemon) or ``cli:<user>`` (``driftd sync``).
        """
        drifts = list(drifts)
        events = list(events)
        return await self._write(lambda c: _record_pass(c, env, target, revision, now, drifts, scope,
                                                        events, inventory, actor))

    async def record_events(self, events: Sequence[AuditEvent]) -> None:
        evs = list(events)

        def fn(c: sqlite3.Connection) -> None:
            for e in evs:
                _insert_event(c, e)

        await self._write(fn)

    async def close_environment(self, env: str, now: datetime, reason: str) -> int:
        """Resolve an environment's open drifts (it was removed from the config)."""
        return await self._write(lambda c: _close_env(c, env, now, reason))

    # --- write intents (driftd.journal.WriteJournal) -------------------------------------------

    async def begin_write(self, intent: Intent) -> int:
        """Record a write about to be made; returns once committed (durable before the write)."""
        now = ts(datetime.now(UTC))

        def fn(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO intents(ts, env, target, subject, operation, revision, actor, owner) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (now, intent.env, intent.target, intent.subject, intent.operation, intent.revision,
                             intent.actor, owner.token()))
            return int(cur.lastrowid or 0)

        return await self._write(fn)

    async def end_write(self, intent_id: int, outcome: Outcome, reason: str | None = None) -> None:
        now = ts(datetime.now(UTC))
        await self._write(lambda c: c.execute(
            "UPDATE intents SET outcome = ?, outcome_ts = ?, reason = ? WHERE id = ? AND outcome IS NULL",
            (str(outcome), now, reason, intent_id)))

    async def mark_interrupted(self) -> list[WriteRecord]:
        """At start: writes whose process died before their outcome was recorded become
        ``interrupted``. Returns them (their objects are re-checked by the first pass). An intent
        whose process still runs (a ``driftd sync`` beside this daemon) is its own: left open."""
        now = ts(datetime.now(UTC))

        def fn(c: sqlite3.Connection) -> list[WriteRecord]:
            owners = dict(c.execute("SELECT id, owner FROM intents WHERE outcome IS NULL").fetchall())
            dead = {i for i, o in owners.items() if owner.alive(o) is False}
            rows = [r for r in queries.writes(c, open_only=True) if r.id in dead]
            c.executemany("UPDATE intents SET outcome = ?, outcome_ts = ?, reason = ? WHERE id = ? AND outcome IS NULL",
                          [(str(Outcome.INTERRUPTED), now, "the process stopped before the outcome was recorded", i)
                           for i in sorted(dead)])
            return rows

        return await self._write(fn)

    async def writes(self, *, env: str | None = None, limit: int = 1000) -> list[WriteRecord]:
        return await self._read(lambda c: queries.writes(c, env=env, limit=limit))

    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        now = ts(datetime.now(UTC))
        await self._write(lambda c: c.execute(
            "INSERT INTO kv(namespace, key, value, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            (namespace, key, value, now)))

    async def pause(self, p: Pause, now: datetime) -> None:
        """Record a break-glass pause (replacing one of the same environment and scope) and its audit event."""
        row = (pauses.NAMESPACE, pauses.kv_key(p), pauses.dump(p), ts(now))
        event = AuditEvent(now, p.environment, EventKind.PAUSED, reason=pauses.describe(p), actor=p.by)

        def fn(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO kv(namespace, key, value, updated) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                      row)
            _insert_event(c, event)

        await self._write(fn)

    async def resume(self, env: str, scope: str | None, now: datetime, *, by: str, reason: str = "resumed"
                     ) -> list[Pause]:
        """End the pauses of ``env`` (``scope`` ``*`` or ``KIND/[NS/]NAME``; None: every one), each with an
        audit event. Returns the pauses ended (an expired one too: its row is removed)."""
        def fn(c: sqlite3.Connection) -> list[Pause]:
            ended = []
            for key, value in queries.kv_items(c, pauses.NAMESPACE).items():
                p = pauses.load(value)
                if p is None or p.environment != env or (scope is not None and p.scope != scope):
                    continue
                c.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (pauses.NAMESPACE, key))
                _insert_event(c, AuditEvent(now, env, EventKind.RESUMED, reason=f"{p.what}: {reason}", actor=by))
                ended.append(p)
            return ended

        return await self._write(fn)

    async def kv_delete(self, namespace: str, key: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)))

    async def prune(self, retention: float, now: datetime) -> int:
        """Drop audit events, resolved drifts and finished write intents older than ``retention`` seconds.
        Returns rows removed."""
        cutoff = ts(now) - retention

        def fn(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            n += c.execute("DELETE FROM drifts WHERE resolved_at IS NOT NULL AND resolved_at < ?",
                           (cutoff,)).rowcount
            # Write intents with an outcome age out like events; an open one is kept whatever its age.
            n += c.execute("DELETE FROM intents WHERE ts < ? AND outcome IS NOT NULL", (cutoff,)).rowcount
            return int(n)

        return await self._write(fn)

    # --- API: reads ------------------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        return await self._read(lambda c: queries.kv_get(c, namespace, key))

    async def kv_items(self, namespace: str) -> dict[str, str]:
        return await self._read(lambda c: queries.kv_items(c, namespace))

    async def pauses(self, env: str | None = None) -> list[Pause]:
        """Recorded pauses (of ``env``), expired ones included: ``Pause.holds(now)`` says which hold."""
        rows = await self.kv_items(pauses.NAMESPACE)
        found = [p for p in map(pauses.load, rows.values()) if p is not None]
        return sorted((p for p in found if env is None or p.environment == env), key=lambda p: (p.environment, p.scope))

    async def inventory(self, env: str, target: TargetKind) -> frozenset[ResourceKey]:
        return await self._read(lambda c: queries.inventory(c, env, target))

    async def open_drifts(self, env: str | None = None) -> list[OpenDrift]:
        return await self._read(lambda c: queries.open_drifts(c, env))

    async def revert_times(self, env: str, since: datetime) -> list[tuple[ResourceKey, datetime]]:
        return await self._read(lambda c: queries.revert_times(c, env, since))

    async def events(self, **filters: Any) -> list[AuditEvent]:
        return await self._read(lambda c: queries.events(c, **filters))


# --- write functions (run in the writer thread, inside a SAVEPOINT) ---------------------------

def _insert_event(c: sqlite3.Connection, e: AuditEvent) -> None:
    k = e.key
    cols = key_cols(k) if k else (None, None, None, None, None)
    c.execute(
        "INSERT INTO events(ts, env, revision, target, api_version, kind, namespace, name, drift, event, reason, "
        "changes, changed_by, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ts(e.ts), e.env, e.revision, *cols, str(e.drift) if e.drift else None, str(e.event), e.reason,
         dump_changes(k.kind if k else "", e.changes), e.changed_by, e.actor))


_ACTION_EVENT = {Action.REVERTED: EventKind.REVERTED, Action.REVERT_FAILED: EventKind.REVERT_FAILED}


def _reason_code(reason: str | None) -> str:
    return (reason or "").partition(":")[0]


def _record_pass(c: sqlite3.Connection, env: str, target: TargetKind, revision: str | None, now: datetime,
                 drifts: list[Drift], scope: frozenset[ResourceKey] | None, events: list[AuditEvent],
                 inventory: frozenset[ResourceKey] | None, actor: str = "driftd") -> PassOutcome:
    t = ts(now)
    open_rows = {
        key: (row_id, drift, last_action, last_reason)
        for row_id, key, drift, last_action, last_reason in queries.open_rows(c, env, target)
    }
    opened: list[ResourceKey] = []
    n_events = 0

    def event(kind: EventKind, d: Drift, reason: str | None = None) -> None:
        nonlocal n_events
        _insert_event(c, AuditEvent(now, env, kind, d.key, revision, d.drift, reason, d.changes,
                                    d.changed_by, actor=actor))
        n_events += 1

    seen: set[ResourceKey] = set()
    for d in drifts:
        if d.key in seen:
            continue
        seen.add(d.key)
        changes = dump_changes(d.key.kind, d.changes)
        action, code = str(d.action), _reason_code(d.reason)
        prev = open_rows.get(d.key)
        if prev is None or prev[1] != str(d.drift):
            if prev is not None:  # the drift changed nature (modified -> missing): a new one
                c.execute("UPDATE drifts SET resolved_at = ? WHERE id = ?", (t, prev[0]))
            c.execute(
                "INSERT INTO drifts(env, target, api_version, kind, namespace, name, drift, revision, first_seen, "
                "last_seen, changes, changed_by, last_action, last_reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (env, *key_cols(d.key), str(d.drift), revision, t, t, changes, d.changed_by, action, code))
            event(EventKind.DETECTED, d, d.reason if d.action is Action.REPORTED else None)
            opened.append(d.key)
            prev_action, prev_code = None, None
        else:
            c.execute("UPDATE drifts SET last_seen = ?, revision = ?, changes = ?, changed_by = ?, last_action = ?, "
                      "last_reason = ? WHERE id = ?",
                      (t, revision, changes, d.changed_by, action, code, prev[0]))
            prev_action, prev_code = prev[2], prev[3]
        if d.action in _ACTION_EVENT:
            event(_ACTION_EVENT[d.action], d, d.reason)
        elif d.action is Action.SKIPPED and (prev_action, prev_code) != (action, code):
            kind = EventKind.WOULD_REVERT if code == "dry_run" else EventKind.SKIPPED
            event(kind, d, d.reason)

    resolved: list[ResourceKey] = []
    for key, (row_id, drift, _, _) in open_rows.items():
        if key in seen or (scope is not None and key not in scope):
            continue
        c.execute("UPDATE drifts SET resolved_at = ? WHERE id = ?", (t, row_id))
        _insert_event(c, AuditEvent(now, env, EventKind.RESOLVED, key, revision, DriftKind(drift), actor=actor))
        n_events += 1
        resolved.append(key)

    for e in events:
        _insert_event(c, e)
        n_events += 1
    if inventory is not None:
        c.execute("INSERT INTO inventories(env, target, revision, keys, updated) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT(env, target) DO UPDATE SET revision = excluded.revision, keys = excluded.keys, "
                  "updated = excluded.updated", (env, str(target), revision, dump_keys(inventory), t))
    return PassOutcome(tuple(opened), tuple(resolved), n_events)


def _close_env(c: sqlite3.Connection, env: str, now: datetime, reason: str) -> int:
    rows = c.execute("SELECT id, target, api_version, kind, namespace, name, drift FROM drifts "
                     "WHERE env = ? AND resolved_at IS NULL", (env,)).fetchall()
    for row_id, *cols, drift in rows:
        c.execute("UPDATE drifts SET resolved_at = ? WHERE id = ?", (ts(now), row_id))
        key = ResourceKey(TargetKind(cols[0]), cols[2], cols[4], cols[3], cols[1])
        _insert_event(c, AuditEvent(now, env, EventKind.RESOLVED, key, None, DriftKind(drift), reason))
    return len(rows)
