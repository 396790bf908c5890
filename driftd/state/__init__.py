"""Durable state in SQLite under ``daemon.state_dir``: the audit trail, open drifts, inventories and
cursors (``kv_get``/``kv_put``). All writes go through one writer task; see store.py for durability.

    async with StateStore.open(config.daemon.state_dir) as store:
        await store.record_pass(env, TargetKind.KUBERNETES, revision, now, drifts, inventory=keys)
        await store.kv_put("registry-digests", "ghcr.io/x/y:1.2", "sha256:...")
"""

from .records import AuditEvent, EventKind, OpenDrift, WriteRecord
from .schema import StateError
from .store import DB_NAME, PassOutcome, StateStore, connect, db_path

__all__ = ["DB_NAME", "AuditEvent", "EventKind", "OpenDrift", "PassOutcome", "StateError", "StateStore", "WriteRecord",
           "connect", "db_path"]
