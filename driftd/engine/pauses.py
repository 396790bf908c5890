"""``driftd pause`` / ``driftd resume``: break-glass, recorded in the state store and the audit trail.

During an incident, editing Git is too slow: a pause holds enforcement of an environment (or one
object of it) for a bounded time, whoever runs the daemon. ``policy.modes.decide_mode`` reads it
(a paused object is in ``observe`` mode); the daemon notices a new, ended or expired pause within
``PAUSE_POLL`` seconds and runs a full pass, so a change made while paused is reverted once it ends.
"""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

import anyio

from ..config import Config, parse_duration
from ..model import Pause
from ..state import StateError, StateStore
from .history import parse_object

EXIT_OK, EXIT_ERROR = 0, 2
MAX_PAUSE = 7 * 86400.0  # a forgotten pause must not switch enforcement off for good


async def holding(store: StateStore, now: datetime) -> dict[str, tuple[Pause, ...]]:
    """The pauses holding now, by environment; each one found expired is ended (its row removed, a
    ``resumed`` event by ``driftd`` with reason ``expired``), once."""
    recorded = await store.pauses()
    for p in recorded:
        if not p.holds(now):
            await store.resume(p.environment, p.scope, now, by="driftd", reason="expired")
    out: dict[str, tuple[Pause, ...]] = {}
    for p in recorded:
        if p.holds(now):
            out[p.environment] = (*out.get(p.environment, ()), p)
    return out


def _user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _selector(obj: str | None) -> tuple[str, str, str]:
    if obj is None:
        return "", "", ""
    kind, ns, name = parse_object(obj)
    return kind, ns or "", name


def pause(config: Config, *, env: str, obj: str | None, duration: str, reason: str, out: TextIO,
          now: datetime | None = None) -> int:
    if env not in {e.name for e in config.environments}:
        print(f"driftd: no environment named {env!r} in {config.path}", file=sys.stderr)
        return EXIT_ERROR
    try:
        seconds = parse_duration(duration)
        kind, ns, name = _selector(obj)
    except ValueError as e:
        print(f"driftd: {e}", file=sys.stderr)
        return EXIT_ERROR
    if not 0 < seconds <= MAX_PAUSE:
        print(f"driftd: --for: expected a duration above zero and at most 7d, found {duration!r}", file=sys.stderr)
        return EXIT_ERROR
    if not reason.strip():
        print("driftd: --reason: say why (it is recorded in the audit trail and shown in alerts)", file=sys.stderr)
        return EXIT_ERROR
    now = now or datetime.now(UTC)
    p = Pause(environment=env, until=now + timedelta(seconds=seconds), reason=reason.strip()[:500], by=_user(),
              kind=kind, namespace=ns, name=name, since=now)

    async def write() -> None:
        async with StateStore.open(config.daemon.state_dir) as store:
            await store.pause(p, now)

    try:
        anyio.run(write)
    except StateError as e:
        print(f"driftd: cannot record the pause: {e}", file=sys.stderr)
        return EXIT_ERROR
    what = f"environment {env}" if not kind else f"{p.scope} in {env}"
    print(f"paused {what} until {p.until.isoformat().replace('+00:00', 'Z')} (observe mode: nothing is reverted)",
          file=out)
    return EXIT_OK


def resume(config: Config, *, env: str, obj: str | None, out: TextIO, now: datetime | None = None) -> int:
    """End ``env``'s pause of ``obj``, or every pause of ``env`` without ``obj``."""
    try:
        kind, ns, name = _selector(obj)
    except ValueError as e:
        print(f"driftd: {e}", file=sys.stderr)
        return EXIT_ERROR
    scope = Pause(env, datetime.now(UTC), "", "", kind, ns, name).scope if obj else None
    now = now or datetime.now(UTC)

    async def write() -> list[Pause]:
        async with StateStore.open(config.daemon.state_dir) as store:
            return await store.resume(env, scope, now, by=_user())

    try:
        ended = anyio.run(write)
    except StateError as e:
        print(f"driftd: cannot record the resume: {e}", file=sys.stderr)
        return EXIT_ERROR
    if not ended:
        print(f"driftd: no pause of {obj or 'environment ' + env} to resume", file=sys.stderr)
        return EXIT_ERROR
    for p in ended:
        print(f"resumed {'environment ' + env if not p.kind else p.scope + ' in ' + env}", file=out)
    return EXIT_OK
