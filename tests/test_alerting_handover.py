"""Alerts handed from one replica to the next ([coordination]): the original startsAt is kept, the old
holder neither resends nor resolves, what no longer holds is resolved by the new holder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driftd.alerting import AlertNotifier
from driftd.alerting.notifier import HANDOVER_ANNOTATION
from driftd.alerting.outbox import rfc3339
from tests.alerting_support import daemon, drift, env, report, settings

URL = "http://am1"


class Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def post(self, url: str, alerts: list[dict[str, Any]]) -> None:
        self.sent += [json.loads(json.dumps(a)) for a in alerts]

    async def aclose(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def replica(tmp_path: Path, name: str, clock: Clock) -> tuple[AlertNotifier, Client]:
    c = Client()
    (tmp_path / name).mkdir()
    n = AlertNotifier(settings((URL,)), daemon(tmp_path / name), clock=clock, client=c)  # type: ignore[arg-type]
    return n, c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_new_holder_continues_with_the_original_starts_at(tmp_path: Path) -> None:
    clock = Clock()
    a, ca = replica(tmp_path, "a", clock)
    b, cb = replica(tmp_path, "b", clock)
    e = env()
    await a.environment_checked(e, report(e, drift("web"), drift("api")))
    await a.deliver()
    starts = {x["labels"]["name"]: x["startsAt"] for x in ca.sent}
    assert starts == {"web": rfc3339(clock.t), "api": rfc3339(clock.t)}
    state = a.handover_state(e.name)
    assert set(state) == {HANDOVER_ANNOTATION}
    assert len(state[HANDOVER_ANNOTATION]) < 2000  # travels on a Lease: labels, summary, times only

    clock.t += 40  # a's lease expired, b took over
    b.adopt(e.name, state)
    a.hand_off(e.name)
    ca.sent.clear()
    await b.environment_checked(e, report(e, drift("web")))  # api was put back meanwhile
    await b.deliver()
    by_name = {x["labels"]["name"]: x for x in cb.sent}
    assert by_name["web"]["startsAt"] == starts["web"]  # same alert, not a new one
    assert by_name["web"]["endsAt"] > rfc3339(clock.t)  # still firing
    assert by_name["api"]["startsAt"] == starts["api"]
    assert by_name["api"]["endsAt"] == rfc3339(clock.t)  # resolved by the new holder
    # The old holder neither re-sends nor resolves what it handed over.
    clock.t += 120
    await a.deliver()
    a._outbox.resend_due(clock.t, 60)  # type: ignore[union-attr]
    await a.deliver()
    assert ca.sent == []
    assert a.handover_state(e.name) == {}
    await a.aclose()
    await b.aclose()


@pytest.mark.anyio
async def test_adopt_ignores_malformed_and_foreign_state(tmp_path: Path) -> None:
    clock = Clock()
    b, cb = replica(tmp_path, "b", clock)
    e = env()
    b.adopt(e.name, {HANDOVER_ANNOTATION: "not json"})
    b.adopt(e.name, {HANDOVER_ANNOTATION: json.dumps([{"labels": {"alertname": "DriftDetected", "environment": "other"},
                                                        "startsAt": 1.0},
                                                       {"labels": "x", "startsAt": 2.0}, {"startsAt": "soon"}])})
    await b.environment_checked(e, report(e, drift("web")))
    await b.deliver()
    assert [x["startsAt"] for x in cb.sent] == [rfc3339(clock.t)]  # opened afresh
    await b.aclose()
