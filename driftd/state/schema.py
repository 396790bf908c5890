"""Schema migrations, applied in order; ``PRAGMA user_version`` is the number applied.

Never edit a released migration: append a new one. Each runs in its own transaction with the
version bump, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

from ..errors import DriftdError

MIGRATIONS: tuple[str, ...] = (
    # 1: the audit trail, open drifts, inventories, key/value cursors.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        env TEXT NOT NULL,
        revision TEXT,
        target TEXT, api_version TEXT, kind TEXT, namespace TEXT, name TEXT,
        drift TEXT,
        event TEXT NOT NULL,
        reason TEXT,
        changes TEXT NOT NULL DEFAULT '[]',
        changed_by TEXT,
        actor TEXT NOT NULL DEFAULT 'driftd'
    );
    CREATE INDEX events_env_ts ON events(env, ts);
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_object ON events(env, kind, name, ts);
    CREATE TABLE drifts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        env TEXT NOT NULL,
        target TEXT NOT NULL, api_version TEXT NOT NULL, kind TEXT NOT NULL,
        namespace TEXT NOT NULL, name TEXT NOT NULL,
        drift TEXT NOT NULL,
        revision TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        resolved_at REAL,
        changes TEXT NOT NULL DEFAULT '[]',
        changed_by TEXT,
        last_action TEXT,
        last_reason TEXT
    );
    CREATE UNIQUE INDEX drifts_open ON drifts(env, target, api_version, kind, namespace, name)
        WHERE resolved_at IS NULL;
    CREATE INDEX drifts_resolved ON drifts(resolved_at);
    CREATE TABLE inventories (
        env TEXT NOT NULL,
        target TEXT NOT NULL,
        revision TEXT,
        keys TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (env, target)
    );
    CREATE TABLE kv (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    """,
    # 2: write intents (audit before act, see driftd/journal.py): one row per write to a live
    # system, committed before the write; outcome NULL while in flight, `interrupted` if the
    # process died meanwhile (set at the next start).
    """
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        env TEXT NOT NULL,
        target TEXT NOT NULL,
        subject TEXT NOT NULL,
        operation TEXT NOT NULL,
        revision TEXT,
        actor TEXT NOT NULL DEFAULT 'driftd',
        outcome TEXT,
        outcome_ts REAL,
        reason TEXT
    );
    CREATE INDEX intents_open ON intents(id) WHERE outcome IS NULL;
    CREATE INDEX intents_env_ts ON intents(env, ts);
    """,
    # 3: the process each intent belongs to (driftd.state.owner): only its own process's end
    # makes an open intent `interrupted`, never another process's start.
    """
    ALTER TABLE intents ADD COLUMN owner TEXT;
    """,
)


class StateError(DriftdError):
    """The state database cannot be used (newer schema, corrupt file, unwritable directory)."""


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database to the latest schema. ``conn`` must be in autocommit mode."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(MIGRATIONS):
        raise StateError(f"schema version {current} is newer than this driftd knows ({len(MIGRATIONS)}); "
                         "upgrade driftd or point daemon.state_dir elsewhere", subject=path)
    for version in range(current + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[version - 1].split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
