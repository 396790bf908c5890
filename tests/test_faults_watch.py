"""A broken watch stream never stops the daemon (a fault-injecting proxy in front of the real API server).

- One malformed line on a watch: logged, the watch re-established from its resourceVersion; before the
  fix the JSONDecodeError escaped the informer and `driftd run` exited.
- An event of a shape the informer does not expect (an unexpected exception inside it): that informer
  goes to error, the environment reading it reports `error` naming the watch (its objects are unknown,
  never drifted), the other environment on the same cluster keeps reverting, /readyz and the report
  say so; when the stream is sane again the environment recovers by itself.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.daemon_support import DaemonProc, GitRepo, configmap, deployment, wait_for, write_config
from tests.fault_proxy import KubeFaultProxy
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@dataclass
class Setup:
    sandbox: Sandbox
    proxy: KubeFaultProxy
    daemon: DaemonProc
    ns: dict[str, str]


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("faults-watch")
    tag = uuid.uuid4().hex[:6]
    ns = {n: f"fw-{n}-{tag}" for n in ("a", "b")}
    for namespace in ns.values():
        sandbox.kubectl("create", "namespace", namespace)
    proxy = KubeFaultProxy(sandbox).start()
    repo = GitRepo(sandbox, f"faults-watch-{tag}.git", tmp / "work")
    repo.commit({"a/cm.yaml": configmap("settings"), "b/web.yaml": deployment("web", 2)})
    envs = [{"name": n, "mode": "enforce", "brakes": {"fight_max_reverts": 100},  # the tests revert one object often
             "kubernetes": {"cluster": "sandbox", "namespace": ns[n], "path": n, "resync_interval": "2s"}}
            for n in ns]
    state, port = tmp / "state", free_port()
    cfg = write_config(tmp / "driftd.toml", sandbox, repo_url=repo.url, state_dir=state, port=port, envs=envs)
    kubeconfig = proxy.kubeconfig(tmp / "proxy.kubeconfig")
    cfg.write_text(cfg.read_text().replace(sandbox.kubeconfig, str(kubeconfig)))
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        d.wait_checked(*ns)
        yield Setup(sandbox, proxy, d, ns)
    finally:
        rc = d.stop()
        proxy.stop()
        for namespace in ns.values():
            sandbox.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        assert rc == 0, d.tail()


def _cm(s: Setup) -> str:
    return str(s.sandbox.kubectl_json("-n", s.ns["a"], "get", "configmap", "settings")["data"]["k"])


def _replicas(s: Setup) -> int:
    return int(s.sandbox.kubectl_json("-n", s.ns["b"], "get", "deployment", "web")["spec"]["replicas"])


def test_malformed_watch_line_is_logged_and_the_watch_reestablished(setup: Setup) -> None:
    s, d = setup, setup.daemon
    path = f"/namespaces/{s.ns['a']}/configmaps"
    before = len([w for w in s.proxy.watches if path in w])
    s.proxy.inject(path, b"{this is not json")
    # Any event ends the current watch (the server re-watches every few minutes): provoke one.
    s.sandbox.kubectl("-n", s.ns["a"], "annotate", "configmap", "settings", f"poke={uuid.uuid4().hex[:6]}")
    wait_for(lambda: len([w for w in s.proxy.watches if path in w]) >= before + 1, 30,
             lambda: f"the watch re-established after the bad line; watches: {s.proxy.watches[-5:]}\n{d.tail()}")
    assert s.proxy.injected, "the proxy never injected the line"
    bad = [r for r in d.logs() if r.get("event") == "informer.disconnected" and "malformed" in str(r.get("error"))]
    assert bad, d.tail()
    # The watch works: an out-of-band change is seen and reverted.
    s.sandbox.kubectl("-n", s.ns["a"], "patch", "configmap", "settings", "-p", '{"data":{"k":"oob"}}')
    wait_for(lambda: _cm(s) == "v", 20, lambda: f"reverted after the re-watch; log:\n{d.tail()}")
    assert d.alive(), d.tail()


def test_unexpected_event_puts_only_that_informer_in_error(setup: Setup) -> None:
    s, d = setup, setup.daemon
    path = f"/namespaces/{s.ns['a']}/configmaps"
    # Valid JSON, wrong shape: `metadata` is a string. Every new watch of env a's configmaps gets it.
    s.proxy.inject(path, b'{"type": "ADDED", "object": {"kind": "ConfigMap", "metadata": "boom"}}', times=-1)
    try:
        s.sandbox.kubectl("-n", s.ns["a"], "annotate", "configmap", "settings", f"poke={uuid.uuid4().hex[:6]}")
        env = wait_for(lambda: (e := d.environments()["a"])["status"] == "error" and e, 30,
                       lambda: f"env a in error; envs: {d.environments()}\n{d.tail()}")
        assert "is failing" in env["error"], env
        assert "AttributeError" in env["error"], env
        assert [r for r in d.logs() if r.get("event") == "informer.crashed"], d.tail()
        # The other environment on the same cluster keeps passing.
        s.sandbox.kubectl("-n", s.ns["b"], "scale", "deployment", "web", "--replicas=5")
        wait_for(lambda: _replicas(s) == 2, 20, lambda: f"env b reverted meanwhile; log:\n{d.tail()}")
        envs = d.environments()
        assert envs["b"]["status"] in ("in_sync", "drifted"), envs["b"]
        assert envs["a"]["status"] == "error"
        with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/readyz", timeout=5) as r:
            assert r.status == 200  # ready: it checked every environment; the report says which is in error
        # Env a's objects are unknown, not drifted: an out-of-band change there is not acted on blindly,
        # and nothing is reported missing.
        assert not d.environments()["a"]["drifts"], d.environments()["a"]
    finally:
        s.proxy.clear()
    # The stream is sane again: env a recovers by itself (re-list, watch) and reverts again.
    wait_for(lambda: d.environments()["a"]["status"] != "error", 60, lambda: f"env a recovered; log:\n{d.tail()}")
    s.sandbox.kubectl("-n", s.ns["a"], "patch", "configmap", "settings", "-p", '{"data":{"k":"oob2"}}')
    wait_for(lambda: _cm(s) == "v", 20, lambda: f"env a reverts again; log:\n{d.tail()}")
    assert d.alive(), d.tail()
