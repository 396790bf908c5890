"""Audit before act: every write driftd makes to the cluster has exactly one record, whatever happens.

The API server's side is observed through a proxy in front of the real kube-apiserver (tests/fault_proxy.py):
it lists every write the server answered. The journal is the state store's `intents` table.

- SIGKILL `driftd run` during a burst of 50 reverts, restart it: every write that reached the API server
  has exactly one intent, whose outcome is recorded or `interrupted` (marked at the restart); no write
  is recorded `done` that the server did not accept.
- A revert that outlives the reconcile deadline: before the fix the engine raised UnboundLocalError and
  recorded nothing although the PATCH reached the server; now the pass records `revert_failed` (deadline)
  and the journal holds the write as `cancelled`.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon_support import DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.fault_proxy import KubeFaultProxy
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

N = 50


def intents(state: Path) -> list[dict[str, Any]]:
    c = sqlite3.connect(state / "driftd.db")
    c.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in c.execute("SELECT * FROM intents ORDER BY id")]
    finally:
        c.close()


def _op(path: str, method: str) -> tuple[str, str]:
    return (method, path)


def check_journal(writes: list[tuple[float, str, str, int]], rows: list[dict[str, Any]]) -> None:
    """Per (method, path), comparing the journal with what the API server answered:
    - every write the server accepted is on record exactly once: as `done`, or with an unknown outcome
      (`interrupted`/`cancelled`, or none yet right after a kill);
    - nothing is recorded `done` that the server did not accept;
    - every write the server refused is on record as `failed` (or unknown). `failed` may also be a write
      that never reached the server (it was down): its record says so, no write is claimed."""
    accepted = Counter((m, p) for _, m, p, st in writes if 200 <= st < 300)
    refused = Counter((m, p) for _, m, p, st in writes if not 200 <= st < 300)
    done: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    unknown: Counter[tuple[str, str]] = Counter()
    for r in rows:
        assert r["target"] == "kubernetes", r
        method, _, path = r["operation"].partition(" ")
        k = (method, path)
        if r["outcome"] == "done":
            done[k] += 1
        elif r["outcome"] == "failed":
            failed[k] += 1
        else:
            assert r["outcome"] in ("interrupted", "cancelled", None), r  # None: the process died (before restart)
            unknown[k] += 1
    for k in set(accepted) | set(refused) | set(done) | set(failed) | set(unknown):
        assert done[k] <= accepted[k], f"{k}: recorded done {done[k]}x, the server accepted {accepted[k]}x"
        assert accepted[k] <= done[k] + unknown[k], \
            f"{k}: the server accepted {accepted[k]} writes, {done[k]} done + {unknown[k]} unknown on record"
        assert accepted[k] + refused[k] <= done[k] + failed[k] + unknown[k], \
            f"{k}: {accepted[k] + refused[k]} writes reached the server, " \
            f"{sum(x[k] for x in (done, failed, unknown))} on record"


@dataclass
class Env:
    sandbox: Sandbox
    proxy: KubeFaultProxy
    ns: str
    cfg: Path
    state: Path
    port: int
    log: Path


@pytest.fixture
def env(sandbox: Sandbox, tmp_path: Path) -> Iterator[Env]:
    tag = uuid.uuid4().hex[:6]
    ns = f"fa-burst-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    docs = [configmap(f"cm-{i:02d}") for i in range(N)]
    repo = GitRepo(sandbox, f"faults-audit-{tag}.git", tmp_path / "work")
    repo.commit({"k8s/cms.yaml": docs})
    sandbox.kubectl("-n", ns, "apply", "--server-side", "--field-manager=driftd", "-f", "-",
                    input=yaml.safe_dump_all(docs))
    proxy = KubeFaultProxy(sandbox).start()
    # No storm brake: 50 of 50 objects drifting at once is the point here.
    envs = [{"name": "burst", "mode": "enforce",
             "brakes": {"storm_fraction": 1.0, "max_reverts_per_cycle": 500, "fight_max_reverts": 100},
             "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s", "resync_interval": "60s"}}]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    cfg.write_text(cfg.read_text().replace(sandbox.kubeconfig, str(proxy.kubeconfig(tmp_path / "proxy.kubeconfig"))))
    try:
        yield Env(sandbox, proxy, ns, cfg, state, port, tmp_path / "driftd.log")
    finally:
        proxy.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _drift_all(e: Env, value: str) -> None:
    docs = [configmap(f"cm-{i:02d}", {"k": value}) for i in range(N)]
    e.sandbox.kubectl("-n", e.ns, "apply", "--server-side", "--force-conflicts", "--field-manager=ops", "-f", "-",
                      input=yaml.safe_dump_all(docs))


def _in_sync(e: Env) -> int:
    items = e.sandbox.kubectl_json("-n", e.ns, "get", "configmaps")["items"]
    return sum(1 for o in items if o["metadata"]["name"].startswith("cm-") and (o.get("data") or {}).get("k") == "v")


def test_sigkill_during_a_burst_of_reverts_loses_no_write(env: Env) -> None:
    d = DaemonProc(env.cfg, env.state, env.port, env.log).start()
    try:
        d.wait_checked("burst")
        assert not intents(env.state)  # in sync: nothing written
        env.proxy.write_delay = 0.25  # a slow server: the burst takes a few seconds
        _drift_all(env, "oob")
        wait_for(lambda: len(env.proxy.writes) >= 10, 60, lambda: f"reverts under way; log:\n{d.tail()}")
        d.kill9()
        time.sleep(1.0)  # writes the proxy held back are forwarded now: they too reached the server
        before = list(env.proxy.writes)
        rows = intents(env.state)
        assert len(before) < 2 * N, "the burst ended before the kill: nothing was in flight"
        assert rows, "no intent recorded"
        check_journal(before, rows)
        open_ = [r for r in rows if r["outcome"] is None]

        env.proxy.write_delay = 0.0
        d = DaemonProc(env.cfg, env.state, env.port, env.log).start()
        wait_for(lambda: _in_sync(env) == N, 60, lambda: f"all reverted after the restart; log:\n{d.tail()}")
        after = intents(env.state)
        by_id = {r["id"]: r for r in after}
        for r in open_:
            assert by_id[r["id"]]["outcome"] == "interrupted", by_id[r["id"]]
        interrupted = [x for x in d.logs() if x.get("event") == "write.interrupted"]
        assert len(interrupted) == len(open_), (len(interrupted), len(open_))
        wait_for(lambda: d.environments().get("burst", {}).get("status") == "in_sync", 30,
                 lambda: f"in sync; {d.environments()}")
        assert d.stop() == 0, d.tail()
        final = intents(env.state)
        assert all(r["outcome"] is not None for r in final), [r for r in final if r["outcome"] is None]
        check_journal(list(env.proxy.writes), final)
    finally:
        if d.alive():
            d.stop()


def test_revert_outliving_the_deadline_is_recorded(env: Env) -> None:
    # shutdown_timeout 2s: the revert deadline is 1.6 s; each write takes 3 s at the server.
    env.cfg.write_text(env.cfg.read_text().replace('shutdown_timeout = "15s"', 'shutdown_timeout = "2s"'))
    d = DaemonProc(env.cfg, env.state, env.port, env.log).start()
    try:
        d.wait_checked("burst")
        b = d.last_event_id()
        env.proxy.write_delay = 3.0
        env.sandbox.kubectl("-n", env.ns, "patch", "configmap", "cm-07", "-p", '{"data":{"k":"oob"}}')
        failed = wait_for(lambda: d.events_after(b, event="revert_failed"), 30,
                          lambda: f"revert_failed recorded; log:\n{d.tail()}")
        assert "revert_timeout" in failed[0]["reason"], failed
        assert not [x for x in d.logs() if x.get("event") == "env.crashed"], d.tail()
        rows = wait_for(lambda: [r for r in intents(env.state) if r["outcome"] == "cancelled"], 10,
                        lambda: f"a cancelled write on record: {intents(env.state)}")
        assert rows[0]["subject"].endswith("cm-07"), rows
        # The write reached the server anyway (the proxy forwarded it): the next pass finds it in sync.
        env.proxy.write_delay = 0.0
        wait_for(lambda: env.proxy.writes, 10, "the held-back write reached the server")
        wait_for(lambda: d.environments()["burst"]["status"] == "in_sync", 30,
                 lambda: f"in sync again; {d.environments()}\n{d.tail()}")
        assert d.alive()
        check_journal(list(env.proxy.writes), intents(env.state))
    finally:
        assert d.stop() == 0, d.tail()
