"""Read queries: plain functions over a connection, shared by the async store and the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ..model import DriftKind, ResourceKey, TargetKind
from .records import AuditEvent, EventKind, OpenDrift, WriteRecord, from_ts, key_from, load_changes, load_keys, ts


def kv_get(c: sqlite3.Connection, namespace: str, key: str) -> str | None:
    row = c.execute("SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
    return None if row is None else str(row[0])


def kv_items(c: sqlite3.Connection, namespace: str) -> dict[str, str]:
    return {k: v for k, v in c.execute("SELECT key, value FROM kv WHERE namespace = ?", (namespace,))}


def inventory(c: sqlite3.Connection, env: str, target: TargetKind) -> frozenset[ResourceKey]:
    row = c.execute("SELECT keys FROM inventories WHERE env = ? AND target = ?", (env, str(target))).fetchone()
    return frozenset() if row is None else load_keys(row[0])


def open_rows(c: sqlite3.Connection, env: str,
              target: TargetKind) -> Iterator[tuple[int, ResourceKey, str, str | None, str | None]]:
    for row in c.execute("SELECT id, target, api_version, kind, namespace, name, drift, last_action, last_reason "
                         "FROM drifts WHERE env = ? AND target = ? AND resolved_at IS NULL", (env, str(target))):
        yield row[0], key_from(*row[1:6]), row[6], row[7], row[8]


def open_drifts(c: sqlite3.Connection, env: str | None = None) -> list[OpenDrift]:
    sql = ("SELECT env, target, api_version, kind, namespace, name, drift, first_seen, last_seen, revision, "
           "changes, changed_by, last_action, last_reason FROM drifts WHERE resolved_at IS NULL")
    args: tuple[Any, ...] = ()
    if env is not None:
        sql += " AND env = ?"
        args = (env,)
    return [OpenDrift(r[0], key_from(*r[1:6]), DriftKind(r[6]), from_ts(r[7]), from_ts(r[8]), r[9],
                      load_changes(r[10]), r[11], r[12], r[13])
            for r in c.execute(sql + " ORDER BY env, kind, namespace, name", args)]


def revert_times(c: sqlite3.Connection, env: str, since: datetime) -> list[tuple[ResourceKey, datetime]]:
    return [(key_from(*r[0:5]), from_ts(r[5])) for r in c.execute(
        "SELECT target, api_version, kind, namespace, name, ts FROM events "
        "WHERE env = ? AND event = 'reverted' AND ts >= ? ORDER BY ts", (env, ts(since)))]


def events(c: sqlite3.Connection, *, env: str | None = None, since: datetime | None = None,
           until: datetime | None = None, kind: str | None = None, namespace: str | None = None,
           name: str | None = None, event: EventKind | None = None, limit: int | None = None) -> list[AuditEvent]:
    """Oldest first. ``kind`` matches case-insensitively (``deployment`` finds ``Deployment``)."""
    where: list[str] = []
    args: list[Any] = []
    for col, v in (("env", env), ("namespace", namespace), ("name", name)):
        if v is not None:
            where.append(f"{col} = ?")
            args.append(v)
    if kind is not None:
        where.append("lower(kind) = lower(?)")
        args.append(kind)
    if event is not None:
        where.append("event = ?")
        args.append(str(event))
    if since is not None:
        where.append("ts >= ?")
        args.append(ts(since))
    if until is not None:
        where.append("ts < ?")
        args.append(ts(until))
    sql = ("SELECT id, ts, env, revision, target, api_version, kind, namespace, name, drift, event, reason, changes, "
           "changed_by, actor FROM events")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    out = []
    for r in c.execute(sql, args):
        key = key_from(r[4], r[5], r[6], r[7], r[8]) if r[4] else None
        out.append(AuditEvent(ts=from_ts(r[1]), env=r[2], event=EventKind(r[10]), key=key, revision=r[3],
                              drift=DriftKind(r[9]) if r[9] else None, reason=r[11], changes=load_changes(r[12]),
                              changed_by=r[13], actor=r[14], id=r[0]))
    return out


def inventory_info(c: sqlite3.Connection, env: str) -> tuple[str | None, datetime | None]:
    """The revision of the environment's last full pass and when it ended (any target; newest first)."""
    row = c.execute("SELECT revision, updated FROM inventories WHERE env = ? ORDER BY updated DESC LIMIT 1",
                    (env,)).fetchone()
    return (None, None) if row is None else (row[0], from_ts(row[1]))


def writes(c: sqlite3.Connection, *, env: str | None = None, open_only: bool = False,
           limit: int | None = None) -> list[WriteRecord]:
    """Write intents, oldest first (``open_only``: those without an outcome)."""
    sql = ("SELECT id, ts, env, target, subject, operation, revision, actor, outcome, outcome_ts, reason "
           "FROM intents WHERE 1 = 1")
    args: list[Any] = []
    if env is not None:
        sql += " AND env = ?"
        args.append(env)
    if open_only:
        sql += " AND outcome IS NULL"
    if limit is not None:  # the newest `limit`, still oldest first
        sql = "SELECT * FROM (" + sql + " ORDER BY id DESC LIMIT ?) ORDER BY id"  # noqa: S608 (no user text)
        args.append(limit)
    else:
        sql += " ORDER BY id"
    return [WriteRecord(r[0], from_ts(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                        from_ts(r[9]) if r[9] is not None else None, r[10])
            for r in c.execute(sql, args)]
