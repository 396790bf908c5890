"""`driftd run` on the sandbox: SIGHUP with a changed ``[alertmanager] urls`` sends the alerts driftd has open
(drift and image alerts, from the same notifier and outbox) to the new Alertmanager, as the same alerts."""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from registry_support import push_image

from tests.daemon_support import WEB_DEPLOYMENT, DaemonProc, GitRepo, configmap, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def am_alerts(am: str, env_name: str) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"filter": f'environment="{env_name}"'})
    with urllib.request.urlopen(f"{am}/api/v2/alerts?{q}", timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _config(path: Path, sandbox: Sandbox, urls: list[str], **kw: Any) -> None:
    write_config(path, sandbox, **kw)
    am = "[alertmanager]\nurls = [" + ", ".join(json.dumps(u) for u in urls) + "]\nresend_interval = \"5s\"\n\n"
    path.write_text(am + path.read_text())


def test_sighup_with_new_alertmanager_urls_delivers_open_alerts_there(sandbox: Sandbox, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    envname, ns = f"amr-{tag}", f"amr-{tag}"
    reg, image_repo = sandbox.registry, f"t/amr-{tag}"
    image = f"{reg}/{image_repo}"
    push_image(reg, image_repo, "1.0.0")
    push_image(reg, image_repo, "1.1.0")
    sandbox.kubectl("create", "namespace", ns)
    git = GitRepo(sandbox, f"amr-{tag}.git", tmp_path / "work")
    # The Deployment is declared but not live: a drift (DriftDetected); it runs 1.0.0 of an image whose
    # policy selects 1.1.0 (DriftdImageUpdateAvailable).
    git.commit({"k8s/app.yaml": WEB_DEPLOYMENT.replace("IMAGE", f"{image}:1.0.0"), "k8s/cm.yaml": configmap("cm")})
    state, port, cfg = tmp_path / "state", free_port(), tmp_path / "driftd.toml"
    dead = f"http://127.0.0.1:{free_port()}"  # an Alertmanager that is not there: alerts wait in the outbox
    kw: dict[str, Any] = {"repo_url": git.url, "state_dir": state, "port": port,
                          "registries": [{"host": reg, "insecure": True}],
                          "envs": [{"name": envname, "mode": "alert", "interval": "2s",
                                    "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "k8s"},
                                    "images": [{"name": "web", "image": image, "semver": "^1",
                                                "action": "report"}]}]}
    _config(cfg, sandbox, [dead], **kw)
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        d.wait_checked(envname)
        wait_for(lambda: [e for e in d.events(env=envname, event="image")
                          if e["reason"].startswith("update_available")], 30, lambda: f"image finding; {d.tail()}")
        wait_for(lambda: [e for e in d.logs() if e.get("event") == "alerting.unreachable"], 20,
                 lambda: f"a failed delivery to the dead URL; {d.tail()}")
        reloaded_at = time.time()
        _config(cfg, sandbox, [sandbox.alertmanager2], **kw)
        d.signal(signal.SIGHUP)

        def names() -> set[str]:
            return {a["labels"]["alertname"] for a in am_alerts(sandbox.alertmanager2, envname)}

        wait_for(lambda: {"DriftDetected", "DriftdImageUpdateAvailable"} <= names(), 30,
                 lambda: f"alerts at alertmanager2: {names()}; log:\n{d.tail()}")
        got = am_alerts(sandbox.alertmanager2, envname)
        for a in got:  # the alerts opened before the reload, not new ones
            assert datetime.fromisoformat(a["startsAt"].replace("Z", "+00:00")).timestamp() < reloaded_at, a
        image_alert = next(a for a in got if a["labels"]["alertname"] == "DriftdImageUpdateAvailable")
        assert (image_alert["annotations"]["current"], image_alert["annotations"]["latest"]) == ("1.0.0", "1.1.0")
        assert am_alerts(sandbox.alertmanager, envname) == []  # never configured
        rec = [e for e in d.logs() if e.get("event") == "alerting.reconfigured"]
        assert rec
        assert rec[0]["added"] == [sandbox.alertmanager2]
        assert rec[0]["removed"] == [dead]
        assert d.alive()
    finally:
        assert d.stop() == 0, d.tail()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
