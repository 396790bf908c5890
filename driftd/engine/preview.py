"""``driftd diff --env E --revision REF``: what would change live if ``REF`` (a branch, tag or commit of
the environment's repository) were applied, without changing anything.

Kubernetes: the target's comparison at that revision (the server-side-apply dry run against the live
objects, human-added fields per managedFields, ignore rules); AWS: its declared properties against
the live ones. What an apply would do: ``modified`` objects change (``-`` live, ``+`` after the
apply), ``missing`` ones are created, objects declared now (or inventoried) but not at ``REF`` are
deleted when the environment prunes (else they stay, listed as such). Unmanaged objects are not
touched by an apply and are not listed. Exit 0 without changes, 1 with, 2 when it cannot tell.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import anyio

from ..config import Config, EnvironmentSettings
from ..errors import DriftdError
from ..log import get_logger
from ..model import (
    Action,
    Change,
    ChangeOp,
    Drift,
    DriftKind,
    EnvironmentReport,
    Report,
    ResourceKey,
    Status,
    TargetKind,
)
from ..redact import redact_drift
from ..render import render_markdown
from ..render.document import diff_lines, object_name
from .desired import load_error
from .oneshot import open_store
from .pools import Sources, TargetPool, aws_context
from .reconciler import declared_keys, prune_allowed

log = get_logger("driftd.engine")
EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class Preview:
    env: str
    ref: str
    revision: str | None  # the commit REF resolved to
    current: str | None  # the environment branch's commit
    changes: tuple[Drift, ...]  # flipped: expected = live now, actual = after the apply
    kept: tuple[ResourceKey, ...] = ()  # no longer declared but not pruned (prune is off)
    errors: tuple[str, ...] = ()


def _flip(c: Change) -> Change:
    """Git-vs-live becomes before-vs-after: ``-`` the live value, ``+`` the value the apply sets."""
    op = {ChangeOp.ADD: ChangeOp.REMOVE, ChangeOp.REMOVE: ChangeOp.ADD}.get(c.op, c.op)
    return dataclasses.replace(c, expected=c.actual, actual=c.expected, op=op)


def _verb(d: Drift) -> str:
    return {DriftKind.MISSING: "create", DriftKind.ORPHANED: "delete"}.get(d.drift, "change")


async def _preview(config: Config, env: EnvironmentSettings, ref: str) -> Preview:
    sources = Sources(config)
    pool = TargetPool(config)
    ctx = aws_context(config, env)
    try:
        try:
            await sources.fetch(env.repository)
        except (DriftdError, TimeoutError) as e:
            return Preview(env.name, ref, None, None, (), errors=(f"cannot fetch {env.repository}: {e}",))
        current = await sources.load(env, **ctx, cluster=pool.cluster_info(env))
        cache = sources.caches[env.repository]
        try:
            commit = await cache.fetch_revision(ref)
        except DriftdError as e:
            return Preview(env.name, ref, None, current.revision, (), errors=(str(e),))
        result = await sources.loader.load_revision(env, commit, **ctx, cluster=pool.cluster_info(env))
        if result.state is None:
            return Preview(env.name, ref, commit, current.revision, (), errors=(load_error(result),))
        errors: list[str] = []
        changes: list[Drift] = []
        kept: list[ResourceKey] = []
        for kind, name in pool.names(env):
            inventory = await _inventory(config, env.name, kind)
            if current.state is not None:
                inventory |= declared_keys(current.state, kind)
            try:
                res = await pool.get(kind, name).target.check(env, result.state, inventory=inventory)
            except DriftdError as e:
                errors.append(f"{kind}: {e}")
                continue
            errors.extend(f"{kind}: {x}" for x in res.errors)
            for d in res.drifts:
                if d.drift is DriftKind.UNMANAGED:
                    continue
                if d.drift is DriftKind.ORPHANED and not prune_allowed(env, kind):
                    kept.append(d.key)
                    continue
                changes.append(dataclasses.replace(redact_drift(d), changes=tuple(_flip(c) for c in d.changes),
                                                   action=Action.REPORTED, reason=None))
        return Preview(env.name, ref, commit, current.revision, tuple(sorted(changes, key=lambda d: d.key)),
                       tuple(sorted(kept)), tuple(errors))
    finally:
        await pool.aclose()


async def _inventory(config: Config, env: str, kind: TargetKind) -> frozenset[ResourceKey]:
    """What the daemon last inventoried, read as driftd check reads it (an unreadable store only loses the
    objects a revision would delete)."""
    async with open_store(config.daemon.state_dir, write=False) as store:
        if store is None:
            return frozenset()
        try:
            return await store.inventory(env, kind)
        except Exception as e:  # sqlite's own errors too (a damaged file): logged, and the preview goes on
            log.warning("state.unavailable", path=str(config.daemon.state_dir), error=str(e))
            return frozenset()


def run_preview(config: Config, *, env: str, ref: str, output: str, out: TextIO) -> int:
    p = anyio.run(_preview, config, config.environment(env), ref)
    if output == "json":
        json.dump(_to_dict(p), out, indent=2, default=str)
        out.write("\n")
    elif output == "markdown":
        _markdown(p, out)
    else:
        _text(p, out)
    for e in p.errors:
        print(f"driftd: {e}", file=sys.stderr)
    if p.errors:
        return EXIT_ERROR
    return EXIT_CHANGES if p.changes else EXIT_OK


def _to_dict(p: Preview) -> dict[str, object]:
    return {"environment": p.env, "ref": p.ref, "revision": p.revision, "current_revision": p.current,
            "changes": [{**d.to_dict(), "would": _verb(d)} for d in p.changes],
            "not_pruned": [{"target": str(k.target), "kind": k.kind, "namespace": k.namespace, "name": k.name}
                           for k in p.kept],
            "errors": list(p.errors)}


def _text(p: Preview, out: TextIO) -> None:
    out.write(f"== {p.env}: applying {p.ref} ({(p.revision or '-')[:12]}) over {(p.current or '-')[:12]}\n")
    for d in p.changes:
        out.write(f"-- would {_verb(d)} {d.key.target} {object_name(d.key)}\n")
        out.writelines(f"   {'@@' if sign == '@' else sign} {text}\n" for sign, text in diff_lines(d))
    for k in p.kept:
        out.write(f"-- no longer declared, stays (prune is off): {k.target} {object_name(k)}\n")
    out.write(f"\n{len(p.changes)} object(s) would change\n" if p.changes else "\nno change\n")


def _markdown(p: Preview, out: TextIO) -> None:
    status = Status.ERROR if p.errors else (Status.DRIFTED if p.changes else Status.IN_SYNC)
    report = Report((EnvironmentReport(p.env, p.revision, status, error="; ".join(p.errors) or None,
                                       drifts=p.changes),))
    render_markdown(report, out, title=f"driftd diff: {p.env} at {p.ref}", generated=datetime.now(UTC))
    if p.kept:
        out.write("\nNo longer declared, not pruned (prune is off): "
                  + ", ".join(f"`{object_name(k)}`" for k in p.kept) + "\n")
    if not p.changes and not p.errors:
        out.write("\nApplying this revision changes nothing live.\n")


__all__: Sequence[str] = ["Preview", "run_preview"]
