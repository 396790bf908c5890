"""The SQLite state store: migrations, open drifts and the audit trail, group commit, crash safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from driftd.model import Action, Change, ChangeOp, Drift, DriftKind, ResourceKey, TargetKind
from driftd.state import AuditEvent, EventKind, StateError, StateStore, connect, db_path
from driftd.state.schema import MIGRATIONS

K = TargetKind.KUBERNETES
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def key(name: str, kind: str = "Deployment") -> ResourceKey:
    return ResourceKey(K, kind, name, "default", "apps/v1")


def drift(name: str, **kw: object) -> Drift:
    return Drift(key(name), DriftKind.MODIFIED, (Change("/spec/replicas", 2, 5),), **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_migrations_wal_and_full_sync(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path / "s"):
        pass
    c = connect(db_path(tmp_path / "s"))
    assert c.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    c.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    c.close()
    with pytest.raises(StateError, match="newer than this driftd knows"):
        async with StateStore.open(tmp_path / "s"):
            pass


@pytest.mark.anyio
async def test_drift_lifecycle_detected_once_then_resolved(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        out = await s.record_pass("prod", K, "r1", NOW, [drift("a"), drift("b")])
        assert sorted(k.name for k in out.opened) == ["a", "b"]
        # The same drifts again: no new events, last_seen moves.
        out = await s.record_pass("prod", K, "r1", NOW + timedelta(seconds=5), [drift("a"), drift("b")])
        assert out.opened == ()
        assert out.events == 0
        # A partial (event-driven) pass about "a" only must not resolve "b".
        out = await s.record_pass("prod", K, "r1", NOW + timedelta(seconds=6), [], scope=frozenset({key("a")}))
        assert [k.name for k in out.resolved] == ["a"]
        open_ = await s.open_drifts("prod")
        assert [d.key.name for d in open_] == ["b"]
        assert open_[0].first_seen == NOW
        assert open_[0].last_seen == NOW + timedelta(seconds=5)
        # A full pass with nothing resolves the rest.
        out = await s.record_pass("prod", K, "r2", NOW + timedelta(seconds=9), [])
        assert [k.name for k in out.resolved] == ["b"]
        evs = await s.events(env="prod")
    assert [(e.event, e.key.name if e.key else None) for e in evs] == [
        (EventKind.DETECTED, "a"), (EventKind.DETECTED, "b"), (EventKind.RESOLVED, "a"), (EventKind.RESOLVED, "b")]
    assert evs[0].changes == (Change("/spec/replicas", 2, 5),)
    assert evs[-1].revision == "r2"


@pytest.mark.anyio
async def test_actions_become_events_and_repeated_skips_are_recorded_once(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        held = drift("a", action=Action.SKIPPED, reason="drift_storm: 6 of 10 objects drifted")
        await s.record_pass("prod", K, "r1", NOW, [held])
        await s.record_pass("prod", K, "r1", NOW, [replace(held, reason="drift_storm: 7 of 10 objects drifted")])
        await s.record_pass("prod", K, "r1", NOW, [drift("a", action=Action.REVERTED)])
        await s.record_pass("prod", K, "r1", NOW, [drift("a", action=Action.REVERT_FAILED, reason="forbidden")])
        await s.record_pass("prod", K, "r1", NOW, [drift("a", action=Action.SKIPPED, reason="dry_run: would revert")])
        evs = [e.event for e in await s.events(env="prod")]
        assert evs == [EventKind.DETECTED, EventKind.SKIPPED, EventKind.REVERTED, EventKind.REVERT_FAILED,
                       EventKind.WOULD_REVERT]
        times = await s.revert_times("prod", NOW - timedelta(minutes=1))
        assert times == [(key("a"), NOW)]


@pytest.mark.anyio
async def test_drift_kind_change_opens_a_new_drift(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        await s.record_pass("prod", K, "r1", NOW, [drift("a")])
        await s.record_pass("prod", K, "r1", NOW, [Drift(key("a"), DriftKind.MISSING)])
        (d,) = await s.open_drifts()
        assert d.drift is DriftKind.MISSING
        assert [e.event for e in await s.events()] == [EventKind.DETECTED, EventKind.DETECTED]


@pytest.mark.anyio
async def test_secret_values_never_stored(tmp_path: Path) -> None:
    secret = Drift(ResourceKey(K, "Secret", "db", "default", "v1"), DriftKind.MODIFIED,
                   (Change("/data/password", "c2VjcmV0MQ==", "aHVudGVyMg==", ChangeOp.NOT_EQUAL),))
    async with StateStore.open(tmp_path) as s:
        await s.record_pass("prod", K, "r1", NOW, [secret])
    raw = db_path(tmp_path).read_bytes() + (tmp_path / "driftd.db-wal").read_bytes() \
        if (tmp_path / "driftd.db-wal").exists() else db_path(tmp_path).read_bytes()
    assert b"aHVudGVyMg" not in raw
    assert b"c2VjcmV0MQ" not in raw
    c = sqlite3.connect(db_path(tmp_path))
    assert "(redacted)" in c.execute("SELECT changes FROM events").fetchone()[0]


@pytest.mark.anyio
async def test_inventory_kv_and_retention(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        inv = frozenset({key("a"), key("b", "Service")})
        await s.record_pass("prod", K, "r1", NOW, [], inventory=inv)
        assert await s.inventory("prod", K) == inv
        assert await s.inventory("prod", TargetKind.AWS) == frozenset()
        await s.kv_put("cursor", "prod", "abc")
        await s.kv_put("cursor", "prod", "def")
        assert await s.kv_get("cursor", "prod") == "def"
        assert await s.kv_get("cursor", "nope") is None
        assert await s.kv_items("cursor") == {"prod": "def"}
        await s.record_pass("prod", K, "r1", NOW - timedelta(days=100), [drift("old")])
        await s.record_pass("prod", K, "r1", NOW - timedelta(days=99), [], inventory=inv)
        await s.record_pass("prod", K, "r1", NOW, [drift("new")])
        removed = await s.prune(90 * 86400, NOW)
        assert removed == 3  # detected + resolved events of "old", and its resolved drift row
        assert [e.key.name for e in await s.events() if e.key] == ["new"]
        assert await s.kv_get("cursor", "prod") == "def"


@pytest.mark.anyio
async def test_a_damaged_database_is_a_state_error_not_a_raw_sqlite_error(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        await s.record_pass("prod", K, "r1", NOW, [], inventory=frozenset({key("a")}))
        damage = sqlite3.connect(db_path(tmp_path))
        damage.execute("DROP TABLE inventories")
        damage.commit()
        damage.close()
        with pytest.raises(StateError, match="cannot read the state database") as ei:
            await s.inventory("prod", K)
        assert ei.value.retryable
        assert isinstance(ei.value.__cause__, sqlite3.Error)


@pytest.mark.anyio
async def test_group_commit_many_concurrent_writers(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        async def one(i: int) -> None:
            await s.record_events([AuditEvent(NOW, f"env{i % 7}", EventKind.BRAKE, reason=f"n{i}")])

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(one, i)
        elapsed = time.perf_counter() - t0
        evs = await s.events()
    assert sorted(int(e.reason[1:]) for e in evs if e.reason) == list(range(500))
    print(f"500 concurrent event writes: {elapsed:.3f}s")


@pytest.mark.anyio
async def test_failed_write_rolls_back_only_itself(tmp_path: Path) -> None:
    async with StateStore.open(tmp_path) as s:
        def boom(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO kv(namespace, key, value, updated) VALUES ('x', 'y', 'z', 0)")
            raise RuntimeError("bad")

        async with anyio.create_task_group() as tg:
            tg.start_soon(s.kv_put, "a", "b", "c")
            with pytest.raises(StateError, match="bad"):
                await s._write(boom)
        assert await s.kv_get("a", "b") == "c"
        assert await s.kv_get("x", "y") is None


_WRITER = textwrap.dedent("""
    import sys, anyio
    from datetime import UTC, datetime
    from pathlib import Path
    from driftd.model import ResourceKey, TargetKind, Drift, DriftKind
    from driftd.state import StateStore, AuditEvent, EventKind

    async def main():
        async with StateStore.open(Path(sys.argv[1])) as s:
            i = 0
            while True:
                now = datetime.now(UTC)
                # One pass = 5 events in one transaction: a crash must leave all or none.
                evs = [AuditEvent(now, "prod", EventKind.BRAKE, reason=f"{sys.argv[2]}:{i}:{j}") for j in range(5)]
                async with anyio.create_task_group() as tg:
                    for n in range(3):
                        tg.start_soon(s.record_events, [AuditEvent(now, "p", EventKind.BRAKE, reason=f"{i}:c{n}")])
                    await s.record_events(evs)
                print(i, flush=True)
                i += 1
    anyio.run(main)
""")


def test_kill_9_loses_no_acknowledged_event_and_leaves_no_half_pass(tmp_path: Path) -> None:
    for round_ in range(3):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(round_)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
        acked: list[int] = []
        assert p.stdout is not None
        deadline = time.monotonic() + 20
        while len(acked) < 30 + 20 * round_ and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        assert acked, "the writer never acknowledged a write"
        c = sqlite3.connect(db_path(tmp_path))
        rows = [r[0] for r in c.execute("SELECT reason FROM events WHERE env = 'prod'")]
        c.close()
        passes: dict[tuple[str, str], int] = {}
        for r in rows:
            rnd, i, _ = r.split(":")
            passes[(rnd, i)] = passes.get((rnd, i), 0) + 1
        # Every acknowledged pass is there exactly once, in full; no pass is there in part.
        for i in acked:
            assert passes.get((str(round_), str(i))) == 5
        assert set(passes.values()) == {5}, "a half-written or duplicated pass"


def _intent_in_child(state_dir: Path, operation: str) -> subprocess.Popen[str]:
    """Another driftd process (a `driftd sync`, a daemon) with one write in flight: it prints the
    intent's id, then waits, the write unfinished, until it is killed."""
    code = ("import anyio, sys, time\n"
            "from pathlib import Path\n"
            "from driftd.journal import Intent\n"
            "from driftd.state import StateStore\n"
            "async def main():\n"
            "    async with StateStore.open(Path(sys.argv[1])) as s:\n"
            "        print(await s.begin_write(Intent('prod', 'aws', 'Name=p', sys.argv[2])), flush=True)\n"
            "        await anyio.sleep(3600)\n"
            "anyio.run(main)\n")
    return subprocess.Popen([sys.executable, "-c", code, str(state_dir), operation], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


def _kill(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.wait()
    if child.stdout is not None:
        child.stdout.close()


@pytest.mark.anyio
async def test_an_intent_belongs_to_the_process_that_opened_it(tmp_path: Path) -> None:
    """Issue 22 §7: a daemon starting beside a running `driftd sync` must not mark the sync's write in
    flight `interrupted` (its real outcome would then be dropped); once that process is gone, it is."""
    from driftd.journal import Outcome

    async with StateStore.open(tmp_path):
        pass  # the schema, before two processes open it
    child = _intent_in_child(tmp_path, "ec2:authorize_security_group_ingress")
    try:
        theirs = int(child.stdout.readline())  # type: ignore[union-attr]
        async with StateStore.open(tmp_path) as s:
            assert await s.mark_interrupted() == []  # the daemon's start: the other process still writes
            assert {w.id: w.outcome for w in await s.writes()} == {theirs: None}
            await s.end_write(theirs, Outcome.DONE)  # as the sync would, its outcome is kept
            assert {w.id: w.outcome for w in await s.writes()} == {theirs: "done"}
    finally:
        _kill(child)
    child = _intent_in_child(tmp_path, "ssm:put_parameter")
    orphan = int(child.stdout.readline())  # type: ignore[union-attr]
    _kill(child)
    async with StateStore.open(tmp_path) as s:
        assert [w.id for w in await s.mark_interrupted()] == [orphan]  # its process is gone
        assert {w.id: w.outcome for w in await s.writes()}[orphan] == "interrupted"


@pytest.mark.anyio
async def test_write_intents_outcomes_interrupted_and_retention(tmp_path: Path) -> None:
    """The write journal (issue 13 §2): an intent is committed before begin_write returns, its outcome
    recorded once; an intent left open is marked interrupted at the next start; retention drops
    finished intents older than it, never an open one."""
    from driftd.journal import Intent, Outcome

    async with StateStore.open(tmp_path) as s:
        a = await s.begin_write(Intent("prod", "kubernetes", "cm/a", "PATCH /api/v1/namespaces/x/configmaps/a"))
    # b is opened by a process that then dies with it in flight.
    child = _intent_in_child(tmp_path, "ssm:put_parameter")
    b = int(child.stdout.readline())  # type: ignore[union-attr]
    _kill(child)
    async with StateStore.open(tmp_path) as s:
        await s.end_write(a, Outcome.DONE)
        await s.end_write(a, Outcome.FAILED, "late")  # an outcome is recorded once
        rows = {w.id: w for w in await s.writes()}
        assert rows[a].outcome == "done"
        assert rows[a].reason is None
        assert rows[b].outcome is None
    # "the process died": b is still open on disk; the next start marks it.
    async with StateStore.open(tmp_path) as s:
        marked = await s.mark_interrupted()
        assert [w.id for w in marked] == [b]
        assert {w.id: w.outcome for w in await s.writes()} == {a: "done", b: "interrupted"}
        c = await s.begin_write(Intent("prod", "git", "repo main", "push refs/heads/main"))
        removed = await s.prune(0, datetime.now(UTC) + timedelta(seconds=5))  # intents carry the real time
        assert removed == 2  # a and b (finished); c is open and stays
        assert [w.id for w in await s.writes()] == [c]
