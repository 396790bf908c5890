"""``[coordination]``: parsed into CoordinationSettings; absent means a single replica as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftd.config import CoordinationSettings, load_config
from driftd.errors import ConfigErrors

BASE = """
[[clusters]]
name = "prod"
[[repositories]]
name = "r"
url = "https://git.example/r.git"
[[environments]]
name = "e"
repository = "r"
branch = "main"
[environments.kubernetes]
cluster = "prod"
"""


def load(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "driftd.toml"
    p.write_text(BASE + extra)
    return load_config(p)


def test_absent_means_one_replica(tmp_path: Path) -> None:
    assert load(tmp_path, "").coordination is None


def test_parsed_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTD_REPLICA", "driftd-2")
    c = load(tmp_path, '[coordination]\ncluster = "prod"\nnamespace = "driftd"\n').coordination
    assert c == CoordinationSettings(cluster="prod", namespace="driftd", identity="driftd-2")
    assert c.lease_duration == 15.0
    assert c.renew_interval == 5.0
    assert c.poll_interval == 2.0


def test_explicit_identity_and_duration(tmp_path: Path) -> None:
    c = load(tmp_path, '[coordination]\ncluster = "prod"\nnamespace = "ops"\nidentity = "ops-host-1"\n'
                       'group = "eu"\nlease_duration = "30s"\n').coordination
    assert c is not None
    assert (c.identity, c.group, c.lease_duration) == ("ops-host-1", "eu", 30.0)


@pytest.mark.parametrize(("extra", "key", "message"), [
    ('cluster = "nope"\nnamespace = "n"', "coordination.cluster", "no [[clusters]] named 'nope'"),
    ('namespace = "n"', "coordination.cluster", "required key is missing"),
    ('cluster = "prod"', "coordination.namespace", "required key is missing"),
    ('cluster = "prod"\nnamespace = "n"\nidentity = "Driftd_0"', "coordination.identity", "lower-case DNS name"),
    ('cluster = "prod"\nnamespace = "n"\nlease_duration = "1s"', "coordination.lease_duration", "at least 3s"),
    ('cluster = "prod"\nnamespace = "n"\nleases = 3', "coordination.leases", "unknown key"),
])
def test_errors_name_the_key(tmp_path: Path, extra: str, key: str, message: str) -> None:
    with pytest.raises(ConfigErrors) as e:
        load(tmp_path, "[coordination]\n" + extra + "\n")
    assert any(err.key == key and message in err.message for err in e.value.errors), [str(x) for x in e.value.errors]


def test_permissions_print_the_leases_role(tmp_path: Path) -> None:
    import json

    from driftd.engine.permissions import render_permissions

    cfg = load(tmp_path, '[coordination]\ncluster = "prod"\nnamespace = "driftd"\nidentity = "a"\n')
    out = json.loads(render_permissions(cfg, load=False))
    assert out["coordination"]["cluster"] == "prod"
    role = out["coordination"]["role"]
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "driftd")
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "list", "watch", "create", "update"]}]
    assert "coordination" not in json.loads(render_permissions(load(tmp_path, ""), load=False))
