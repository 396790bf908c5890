"""Break-glass pauses without servers: ``driftd pause``/``resume`` as an operator runs them (the CLI, a
real SQLite state store), the audit trail, expiry, the report and the ``DriftdPaused`` alert.
The daemon honouring a pause against a real cluster is in test_pause_daemon.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from driftd.cli import main
from driftd.model import Pause
from driftd.state import EventKind, StateStore
from tests.alerting_support import env, report
from tests.test_alerting import notifier

CONFIG = """
[daemon]
state_dir = "{state}"
[[clusters]]
name = "c"
[[repositories]]
name = "envs"
url = "https://git.example.com/envs.git"
[[environments]]
name = "prod"
repository = "envs"
branch = "prod"
mode = "enforce"
  [environments.kubernetes]
  cluster = "c"
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "driftd.toml"
    p.write_text(CONFIG.format(state=tmp_path / "state"))
    return p


def _recorded(tmp_path: Path) -> tuple[list[Pause], list[tuple[str, str | None, str]]]:
    async def read() -> tuple[list[Pause], list[tuple[str, str | None, str]]]:
        async with StateStore.open(tmp_path / "state") as store:
            events = await store.events(env="prod")
            return await store.pauses(), [(str(e.event), e.reason, e.actor) for e in events]
    return anyio.run(read)


def test_pause_and_resume_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(_config(tmp_path))
    before = datetime.now(UTC)
    assert main(["pause", "-c", cfg, "--env", "prod", "--for", "2h", "--reason", "INC-42 db failover"]) == 0
    assert main(["pause", "-c", cfg, "--env", "prod", "--object", "Deployment/web/frontend", "--for", "30m",
                 "--reason", "debugging"]) == 0
    out = capsys.readouterr().out
    assert "paused environment prod until" in out
    assert "paused Deployment/web/frontend in prod until" in out
    pauses, events = _recorded(tmp_path)
    assert [p.scope for p in pauses] == ["*", "Deployment/web/frontend"]
    whole = pauses[0]
    assert whole.reason == "INC-42 db failover"
    assert whole.by.startswith("cli:")
    assert timedelta(hours=2) - timedelta(seconds=5) < whole.until - before < timedelta(hours=2, seconds=5)
    assert [e[0] for e in events].count(str(EventKind.PAUSED)) == 2
    assert any("INC-42" in (e[1] or "") for e in events)

    # history shows them (text), as an auditor would read them
    assert main(["history", "-c", cfg, "--env", "prod", "-o", "json"]) == 0
    hist = json.loads(capsys.readouterr().out)
    assert {e["event"] for e in hist["events"]} == {"paused"}

    assert main(["resume", "-c", cfg, "--env", "prod", "--object", "Deployment/web/frontend"]) == 0
    assert [p.scope for p in _recorded(tmp_path)[0]] == ["*"]
    assert main(["resume", "-c", cfg, "--env", "prod"]) == 0
    pauses, events = _recorded(tmp_path)
    assert pauses == []
    assert [e[0] for e in events].count(str(EventKind.RESUMED)) == 2
    assert main(["resume", "-c", cfg, "--env", "prod"]) == 2  # nothing left to resume: said so
    assert "no pause" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--env", "nope", "--for", "1h", "--reason", "x"], "no environment named 'nope'"),
    (["--env", "prod", "--for", "2 hours", "--reason", "x"], "expected a duration"),
    (["--env", "prod", "--for", "30d", "--reason", "x"], "at most 7d"),
    (["--env", "prod", "--for", "1h", "--reason", "  "], "--reason: say why"),
    (["--env", "prod", "--object", "web", "--for", "1h", "--reason", "x"], "KIND/NAME or KIND/NAMESPACE/NAME"),
])
def test_bad_pause_arguments_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                         message: str) -> None:
    assert main(["pause", "-c", str(_config(tmp_path)), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "state" / "driftd.db").exists() or _recorded(tmp_path)[0] == []


@pytest.mark.anyio
async def test_pause_alert_while_it_holds_and_resolved_when_it_ends(tmp_path: Path) -> None:
    n, c, clock = notifier(tmp_path)
    e = env("prod")
    now = datetime.now(UTC)
    p = Pause("prod", now + timedelta(hours=1), "INC-42", "cli:alice", since=now)
    obj = Pause("prod", now + timedelta(hours=1), "debug", "cli:bob", kind="Deployment", namespace="web",
                name="frontend")
    await n.environment_checked(e, replace(report(e), pauses=(p, obj)))
    await n.deliver()
    fired = [a for a in c.sent("http://am1") if a["labels"]["alertname"] == "DriftdPaused"]
    assert len(fired) == 2
    by_scope = {a["labels"]["scope"]: a for a in fired}
    assert by_scope["environment"]["labels"]["severity"] == "info"
    assert by_scope["environment"]["annotations"]["description"] == "INC-42"
    assert by_scope["environment"]["annotations"]["paused_by"] == "cli:alice"
    assert by_scope["object"]["labels"]["name"] == "frontend"
    c.posts.clear()
    clock.t += 5
    await n.environment_checked(e, replace(report(e), pauses=(obj,)))  # the environment pause was resumed
    await n.deliver()
    resolved = [a for a in c.sent("http://am1") if a["labels"]["alertname"] == "DriftdPaused"]
    assert [a["labels"]["scope"] for a in resolved] == ["environment"]
    assert resolved[0]["endsAt"] <= datetime.fromtimestamp(clock.t + 1, UTC).isoformat()


def test_report_shows_only_pauses_that_hold() -> None:
    now = datetime.now(UTC)
    p = Pause("prod", now + timedelta(minutes=5), "x", "cli:a")
    d = replace(report(env("prod")), pauses=(p,)).to_dict()
    assert d["pauses"][0]["scope"] == "*"
    assert d["pauses"][0]["by"] == "cli:a"
    assert "pauses" not in report(env("prod")).to_dict()


def test_text_report_names_the_pause() -> None:
    import io

    from driftd.model import Report
    from driftd.render.text import render_text

    p = Pause("prod", datetime(2026, 11, 26, 12, 0, tzinfo=UTC), "INC-42", "cli:alice", kind="Deployment",
              namespace="web", name="frontend")
    out = io.StringIO()
    render_text(Report((replace(report(env("prod")), pauses=(p,)),)), out)
    assert "paused: Deployment/web/frontend until 2026-11-26 12:00:00Z by cli:alice: INC-42" in out.getvalue()
