"""Reverting drift: forced server-side apply as ``driftd``, after taking over what humans added.

Order: Namespaces, then CustomResourceDefinitions (waiting until Established, then resolving
the kinds they define), then everything else; then prunes (prune.py). Fields added by human
managers are removed by first merging those managers' managedFields entries into driftd's
(Flux's approach) and then applying: fields driftd owns that Git lacks are dropped by the
server. Ignored fields, including HPA-owned ``spec.replicas``, are in neither step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ...diff import ignore
from ...diff.managed_fields import Path, resolve, take_over
from ...errors import DriftdError
from ...log import get_logger
from ...model import Action, DesiredState, Drift, DriftKind, ResourceKey
from .client import APPLY_PATCH, MERGE_PATCH, ApiError, KubeClient, NotFound
from .compare import FIELD_MANAGER, Planned, apply_body
from .ports import ClusterAccess
from .prune import prune

if TYPE_CHECKING:
    from ...config import EnvironmentSettings

log = get_logger(__name__)

_ORDER = {"Namespace": 0, "CustomResourceDefinition": 1}


async def revert(target: ClusterAccess, env: EnvironmentSettings, desired: DesiredState,
                 drifts: Sequence[Drift], *, dry_run: bool = False) -> tuple[Drift, ...]:
    ks = target.settings(env)
    client = await target.client()
    planned, _, unknown = await target.plan(env, desired)
    by_key = {p.key: p for p in planned}
    results: dict[int, Drift] = {}
    applies = sorted(((i, d) for i, d in enumerate(drifts) if d.drift in (DriftKind.MISSING, DriftKind.MODIFIED)),
                     key=lambda t: _ORDER.get(t[1].key.kind, 2))
    crds_created = False
    for _, group in _phases(applies):
        async with anyio.create_task_group() as tg:
            for i, d in group:
                tg.start_soon(_revert_one, client, ks.human_managers, by_key.get(d.key), d, dry_run, results, i)
        if any(d.key.kind == "CustomResourceDefinition" for _, d in group):
            crds_created = True
            for i, d in group:
                if results[i].action is Action.REVERTED and not dry_run:
                    await _wait_established(client, d.key)
    extra: list[Drift] = []
    if crds_created and unknown and not dry_run:
        # Kinds the new CRDs define could not be planned at check time: create them now.
        disc = await target.discovery()
        for u in unknown:
            disc.forget(str(u.body.get("apiVersion")))
        replanned, _, _ = await target.plan(env, DesiredState(desired.revision, tuple(unknown)))
        for p in replanned:
            d = Drift(p.key, DriftKind.MISSING)
            res: dict[int, Drift] = {}
            await _revert_one(client, ks.human_managers, p, d, dry_run, res, 0)
            extra.append(res[0])
    orphaned = [(i, d) for i, d in enumerate(drifts) if d.drift is DriftKind.ORPHANED]
    pruned = await prune(target, env, desired, [d for _, d in orphaned], dry_run=dry_run)
    for (i, _), d in zip(orphaned, pruned, strict=True):
        results[i] = d
    for i, d in enumerate(drifts):
        if d.drift is DriftKind.UNMANAGED:
            results[i] = dataclasses.replace(d, action=Action.SKIPPED,
                                             reason="unmanaged objects are reported, never deleted")
    return tuple(results[i] for i in range(len(drifts))) + tuple(extra)


def _phases(items: list[tuple[int, Drift]]) -> list[tuple[int, list[tuple[int, Drift]]]]:
    out: dict[int, list[tuple[int, Drift]]] = {}
    for i, d in items:
        out.setdefault(_ORDER.get(d.key.kind, 2), []).append((i, d))
    return sorted(out.items())


async def _revert_one(client: KubeClient, humans: tuple[str, ...], p: Planned | None, d: Drift, dry_run: bool,
                      results: dict[int, Drift], i: int) -> None:
    if p is None:
        results[i] = dataclasses.replace(d, action=Action.SKIPPED, reason="no longer declared in Git")
        return
    # Whether to revert is decided once, for every target, by policy.modes.decide_mode: what reaches here
    # is planned for revert (a disabled object never does: it is not even compared).
    try:
        await apply_object(client, humans, p, dry_run=dry_run)
    except DriftdError as e:
        log.warning("revert.failed", object=str(d.key), error=str(e))
        results[i] = dataclasses.replace(d, action=Action.REVERT_FAILED, reason=str(e.message))
        return
    results[i] = dataclasses.replace(d, action=Action.SKIPPED if dry_run else Action.REVERTED,
                                     reason="dry run: the server accepted the revert" if dry_run else None)
    log.info("revert.applied", object=str(d.key), drift=str(d.drift), dry_run=dry_run)


async def apply_object(client: KubeClient, humans: tuple[str, ...], p: Planned, *, dry_run: bool = False
                       ) -> dict[str, Any]:
    path = p.info.path(p.key.namespace, p.key.name)
    try:
        live: dict[str, Any] | None = await client.request("GET", path, verb="get", resource=p.info.label,
                                                             subject=str(p.key))
    except NotFound:
        live = None
    if live is not None and not dry_run:
        await _take_over(client, humans, p, live)
        live = await client.request("GET", path, verb="get", resource=p.info.label, subject=str(p.key))
    return await client.request(
        "PATCH", path, verb="apply", resource=p.info.label, subject=str(p.key),
        query={"fieldManager": FIELD_MANAGER, "force": True, "dryRun": "All" if dry_run else None},
        body=apply_body(p, live), content_type=APPLY_PATCH)


async def _take_over(client: KubeClient, humans: tuple[str, ...], p: Planned, live: Mapping[str, Any]) -> None:
    meta = live.get("metadata") or {}

    def keep(path: Path) -> bool:
        ptr = resolve(live, path)
        return ptr is not None and ignore.is_ignored(ptr, p.ignored, live)

    new = take_over(meta.get("managedFields") or (), humans, p.info.api_version, keep)
    if new is None:
        return
    # resourceVersion makes this a compare-and-swap: a concurrent write fails it (409), not us.
    await client.request("PATCH", p.info.path(p.key.namespace, p.key.name), verb="patch", resource=p.info.label,
                         subject=str(p.key), content_type=MERGE_PATCH,
                         body={"metadata": {"managedFields": new, "resourceVersion": meta.get("resourceVersion")}})


async def _wait_established(client: KubeClient, key: ResourceKey, wait: float = 30.0) -> None:
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{key.name}"
    with anyio.move_on_after(wait):
        while True:
            try:
                crd = await client.request("GET", path, verb="get", resource="customresourcedefinitions")
            except ApiError:
                crd = {}
            conds = (crd.get("status") or {}).get("conditions") or ()
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                return
            await anyio.sleep(0.2)
    log.warning("crd.not_established", crd=key.name, waited=wait)
