"""The durable alert outbox: the alerts driftd currently has open, and what each Alertmanager
still has to hear about them. One SQLite file (WAL) of its own under ``daemon.state_dir``.

Two tables. ``alerts`` is the state: one row per alert fingerprint with a ``starts_at`` that
stays put for as long as the alert is open (across restarts too), so every resend is the same
alert to Alertmanager, never a new one. ``deliveries`` is the queue: one row per (alert, url)
that has news that url has not acknowledged; ``seq`` tells a delivery that raced a newer state
apart from the current one. What is sent is built from ``alerts`` at send time, so a queued
firing alert that got resolved meanwhile goes out resolved.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .alerts import Alert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fp TEXT PRIMARY KEY,
    env TEXT NOT NULL,
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL,
    expires_at REAL,
    last_queued REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_env ON alerts(env, name);
CREATE TABLE IF NOT EXISTS deliveries (
    fp TEXT NOT NULL,
    url TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    PRIMARY KEY (fp, url)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(url, due);
"""
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
HANDOVER_LIMIT = 300  # open alerts handed to the next holder; ~300 bytes each, far below a Lease's 256 KiB


@dataclass(frozen=True)
class OpenAlert:
    fingerprint: str
    alert: Alert
    starts_at: float
    ends_at: float | None
    expires_at: float | None


@dataclass(frozen=True)
class Pending:
    fingerprint: str
    seq: int
    payload: dict[str, Any]


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def backoff(attempts: int) -> float:
    """Exponential with full jitter on the upper half, capped: 1s, 2s, 4s ... 30s."""
    d = min(BACKOFF_MAX, BACKOFF_BASE * float(2 ** min(max(0, attempts - 1), 16)))
    return d / 2 + random.random() * d / 2


class Outbox:
    def __init__(self, path: Path, urls: Sequence[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.urls = tuple(urls)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL survives a process crash (the daemon's failure mode); only power loss
        # can lose the last commits, and then the next check re-raises what is still true.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # A URL removed from the config: nothing left to tell it.
        marks = ",".join("?" * len(self.urls))
        self._db.execute(f"DELETE FROM deliveries WHERE url NOT IN ({marks})", self.urls)  # noqa: S608

    def close(self) -> None:
        self._db.close()

    def set_urls(self, urls: Sequence[str], now: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Deliver to ``urls`` from now on (a reload changed ``[alertmanager] urls``); returns (added, removed).

        A removed URL's queue is dropped. An added one is queued every open alert, so it hears about
        everything driftd has open (with the original ``startsAt``), and not only what changes next.
        Nothing of the alerts' state is lost: what was waiting for an unreachable old URL goes to the new.
        """
        new = tuple(dict.fromkeys(urls))
        added = tuple(u for u in new if u not in self.urls)
        removed = tuple(u for u in self.urls if u not in new)
        with self._tx():
            for url in removed:
                self._db.execute("DELETE FROM deliveries WHERE url=?", (url,))
            for url in added:
                self._db.execute(
                    "INSERT INTO deliveries(fp, url, seq, attempts, due) SELECT fp, ?, 0, 0, ? FROM alerts"
                    " WHERE ends_at IS NULL ON CONFLICT(fp, url) DO NOTHING", (url, now))
        self.urls = new
        return added, removed

    # --- state ----------------------------------------------------------------------------

    def fire(self, alert: Alert, now: float, *, expires_at: float | None = None, resend: float = 0.0) -> bool:
        """Open (or keep open) ``alert``. Queues it when new, reopened, changed in content, or when
        its last send is older than ``resend``. Returns whether it was queued."""
        fp = alert.fingerprint
        labels = json.dumps(dict(alert.labels), sort_keys=True)
        ann = json.dumps(dict(alert.annotations), sort_keys=True)
        row = self._db.execute("SELECT annotations, generator_url, ends_at, last_queued FROM alerts WHERE fp=?",
                               (fp,)).fetchone()
        with self._tx():
            if row is None or row[2] is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO alerts(fp, env, name, labels, annotations, generator_url, starts_at,"
                    " ends_at, expires_at, last_queued) VALUES (?,?,?,?,?,?,?,NULL,?,?)",
                    (fp, alert.environment, alert.name, labels, ann, alert.generator_url, now, expires_at, now))
                self._enqueue(fp, now)
                return True
            changed = row[0] != ann or row[1] != alert.generator_url
            due = resend > 0 and now - row[3] >= resend
            self._db.execute("UPDATE alerts SET annotations=?, generator_url=?, expires_at=? WHERE fp=?",
                             (ann, alert.generator_url, expires_at, fp))
            if changed or due:
                self._enqueue(fp, now)
                self._db.execute("UPDATE alerts SET last_queued=? WHERE fp=?", (now, fp))
            return changed or due

    def resolve(self, fingerprints: Iterable[str], now: float) -> int:
        n = 0
        with self._tx():
            for fp in fingerprints:
                cur = self._db.execute(
                    "UPDATE alerts SET ends_at=min(?, coalesce(expires_at, ?)), last_queued=?"
                    " WHERE fp=? AND ends_at IS NULL", (now, now, now, fp))
                if cur.rowcount:
                    self._enqueue(fp, now)
                    n += 1
        return n

    def open_alerts(self, env: str | None = None, names: Sequence[str] = ()) -> list[OpenAlert]:
        """Alerts not yet resolved, optionally of one environment and some alert names."""
        q = "SELECT fp, labels, annotations, generator_url, starts_at, ends_at, expires_at FROM alerts" \
            " WHERE ends_at IS NULL"
        args: list[Any] = []
        if env is not None:
            q += " AND env=?"
            args.append(env)
        if names:
            q += f" AND name IN ({','.join('?' * len(names))})"
            args.extend(names)
        return [OpenAlert(r[0], Alert(json.loads(r[1]), json.loads(r[2]), r[3]), r[4], r[5], r[6])
                for r in self._db.execute(q, args)]

    def resend_due(self, now: float, interval: float) -> int:
        """Queue every open alert last sent ``interval`` ago or more."""
        rows = self._db.execute("SELECT fp FROM alerts WHERE ends_at IS NULL AND last_queued <= ?",
                                (now - interval,)).fetchall()
        with self._tx():
            for (fp,) in rows:
                self._enqueue(fp, now)
                self._db.execute("UPDATE alerts SET last_queued=? WHERE fp=?", (now, fp))
        return len(rows)

    def expire(self, now: float) -> int:
        """Resolve event alerts (reverts, brakes) whose time is up."""
        rows = self._db.execute("SELECT fp FROM alerts WHERE ends_at IS NULL AND expires_at <= ?",
                                (now,)).fetchall()
        return self.resolve([r[0] for r in rows], now)

    # --- handover between replicas ([coordination]) ---------------------------------------

    def handover(self, env: str, *, limit: int = HANDOVER_LIMIT) -> list[dict[str, Any]]:
        """The environment's open alerts, oldest first, as the next holder needs them to continue each with
        its original ``startsAt``: labels (the identity), the summary, the times. Bounded: it travels
        on a Lease's annotations."""
        rows = self._db.execute(
            "SELECT labels, annotations, generator_url, starts_at, expires_at FROM alerts"
            " WHERE env=? AND ends_at IS NULL ORDER BY starts_at LIMIT ?", (env, limit)).fetchall()
        out = []
        for labels, ann, gen, starts, expires in rows:
            summary = json.loads(ann).get("summary", "")
            item: dict[str, Any] = {"labels": json.loads(labels), "summary": summary, "startsAt": starts}
            if gen:
                item["generatorURL"] = gen
            if expires is not None:
                item["expiresAt"] = expires
            out.append(item)
        return out

    def adopt(self, env: str, items: Iterable[Mapping[str, Any]], now: float) -> int:
        """Open what the previous holder had open, with its ``startsAt``, without sending anything: the next
        check fires what still holds (same fingerprint, so the original ``startsAt`` goes out) and resolves
        the rest. An alert already open here keeps the earlier ``startsAt``."""
        n = 0
        with self._tx():
            for it in items:
                labels = it.get("labels")
                starts = it.get("startsAt")
                if not isinstance(labels, Mapping) or not isinstance(starts, int | float) \
                        or labels.get("environment") != env or not all(isinstance(v, str) for v in labels.values()):
                    continue  # not ours to adopt, or malformed: the next check opens it afresh
                alert = Alert(dict(labels), {"summary": str(it.get("summary", ""))}, str(it.get("generatorURL", "")))
                expires = it.get("expiresAt")
                row = self._db.execute("SELECT starts_at, ends_at FROM alerts WHERE fp=?",
                                       (alert.fingerprint,)).fetchone()
                if row is not None and row[1] is None:
                    self._db.execute("UPDATE alerts SET starts_at=min(starts_at, ?) WHERE fp=?",
                                     (float(starts), alert.fingerprint))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO alerts(fp, env, name, labels, annotations, generator_url, starts_at,"
                        " ends_at, expires_at, last_queued) VALUES (?,?,?,?,?,?,?,NULL,?,?)",
                        (alert.fingerprint, env, alert.name, json.dumps(dict(alert.labels), sort_keys=True),
                         json.dumps(dict(alert.annotations), sort_keys=True), alert.generator_url, float(starts),
                         float(expires) if isinstance(expires, int | float) else None, now))
                n += 1
        return n

    def forget(self, env: str) -> int:
        """This replica no longer holds ``env``: drop its alerts without resolving them (the new holder
        continues them; Alertmanager keeps them until their ``endsAt`` meanwhile)."""
        with self._tx():
            self._db.execute("DELETE FROM deliveries WHERE fp IN (SELECT fp FROM alerts WHERE env=?)", (env,))
            return self._db.execute("DELETE FROM alerts WHERE env=?", (env,)).rowcount

    # --- queue ----------------------------------------------------------------------------

    def _enqueue(self, fp: str, now: float) -> None:
        for url in self.urls:
            self._db.execute(
                "INSERT INTO deliveries(fp, url, seq, attempts, due) VALUES (?,?,0,0,?)"
                " ON CONFLICT(fp, url) DO UPDATE SET seq=seq+1", (fp, url, now))

    def pending(self, url: str, now: float, *, firing_ttl: float, limit: int = 500) -> list[Pending]:
        rows = self._db.execute(
            "SELECT d.fp, d.seq, a.labels, a.annotations, a.generator_url, a.starts_at, a.ends_at, a.expires_at"
            " FROM deliveries d JOIN alerts a ON a.fp = d.fp WHERE d.url=? AND d.due <= ? ORDER BY d.due LIMIT ?",
            (url, now, limit)).fetchall()
        out = []
        for fp, seq, labels, ann, gen, starts, ends, expires in rows:
            # A firing alert carries an endsAt a few resends ahead: if driftd dies, Alertmanager
            # resolves it by itself instead of keeping it open forever.
            end = ends if ends is not None else (expires if expires is not None else now + firing_ttl)
            payload = {"labels": json.loads(labels), "annotations": json.loads(ann), "startsAt": rfc3339(starts),
                       "endsAt": rfc3339(end)}
            if gen:
                payload["generatorURL"] = gen
            out.append(Pending(fp, seq, payload))
        return out

    def delivered(self, url: str, sent: Sequence[Pending]) -> None:
        with self._tx():
            for p in sent:
                self._db.execute("DELETE FROM deliveries WHERE fp=? AND url=? AND seq=?", (p.fingerprint, url, p.seq))
                # Sent again meanwhile (seq moved on): due now, without backoff.
            self._db.execute(
                "DELETE FROM alerts WHERE ends_at IS NOT NULL AND fp NOT IN (SELECT fp FROM deliveries)")

    def failed(self, url: str, sent: Sequence[Pending], now: float) -> float:
        """Back off these deliveries; returns the delay chosen."""
        delay = 0.0
        with self._tx():
            for p in sent:
                row = self._db.execute("SELECT attempts FROM deliveries WHERE fp=? AND url=?",
                                       (p.fingerprint, url)).fetchone()
                attempts = (row[0] if row else 0) + 1
                delay = backoff(attempts)
                self._db.execute("UPDATE deliveries SET attempts=?, due=? WHERE fp=? AND url=?",
                                 (attempts, now + delay, p.fingerprint, url))
        return delay

    def drop(self, url: str, sent: Sequence[Pending]) -> None:
        """Alertmanager refused these as invalid: retrying cannot help."""
        self.delivered(url, sent)

    def size(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM deliveries").fetchone()[0])

    def next_due(self) -> float | None:
        row = self._db.execute("SELECT min(due) FROM deliveries").fetchone()
        return None if row[0] is None else float(row[0])

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    """BEGIN ... COMMIT (ROLLBACK on error); the connection runs in autocommit mode otherwise."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
