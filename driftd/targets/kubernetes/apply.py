"""Reverting drift: forced server-side apply as ``driftd``, after taking over what humans added.

Order: Namespaces, then CustomResourceDefinitions (waiting until Established), then everything
else, and last the resources of kinds those CRDs define (planned from the CRDs, ``awaits_crd``):
discovery is refreshed and they are planned again against what the server now serves, then
applied, all in the same sync (Flux's staged apply); then prunes (prune.py). Fields added by human
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
from ...names import segment
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
    planned, _, _ = await target.plan(env, desired)
    by_key = {p.key: p for p in planned}
    results: dict[int, Drift] = {}
    applies = [(i, d) for i, d in enumerate(drifts) if d.drift in (DriftKind.MISSING, DriftKind.MODIFIED)]
    later = [(i, d) for i, d in applies if (p := by_key.get(d.key)) is not None and p.awaits_crd]
    for _, group in _phases([t for t in applies if t not in later]):
        async with anyio.create_task_group() as tg:
            for i, d in group:
                tg.start_soon(_revert_one, client, ks.human_managers, by_key.get(d.key), d, dry_run, results, i)
        if any(d.key.kind == "CustomResourceDefinition" for _, d in group):
            for i, d in group:
                if results[i].action is Action.REVERTED and not dry_run:
                    await _wait_established(client, d.key)
    if later:
        await _apply_after_crds(target, env, desired, later, by_key, dry_run, results)
    orphaned = [(i, d) for i, d in enumerate(drifts) if d.drift is DriftKind.ORPHANED]
    pruned = await prune(target, env, desired, [d for _, d in orphaned], dry_run=dry_run)
    for (i, _), d in zip(orphaned, pruned, strict=True):
        results[i] = d
    for i, d in enumerate(drifts):
        if d.drift is DriftKind.UNMANAGED:
            results[i] = dataclasses.replace(d, action=Action.SKIPPED,
                                             reason="unmanaged objects are reported, never deleted")
    return tuple(results[i] for i in range(len(drifts)))


async def _apply_after_crds(target: ClusterAccess, env: EnvironmentSettings, desired: DesiredState,
                            items: list[tuple[int, Drift]], by_key: Mapping[ResourceKey, Planned], dry_run: bool,
                            results: dict[int, Drift]) -> None:
    """Resources of kinds defined by CRDs created above: discovery is asked again (the CRD's own
    ``names`` may differ from what the server serves), then each is applied as planned now."""
    ks = target.settings(env)
    if dry_run:
        for i, d in items:
            results[i] = dataclasses.replace(d, action=Action.SKIPPED,
                                             reason="dry run: applied once its CustomResourceDefinition is created")
        return
    disc = await target.discovery()
    for av in {by_key[d.key].desired.body.get("apiVersion") for _, d in items}:
        disc.forget(str(av))
    replanned, errors, _ = await target.plan(env, DesiredState(desired.revision,
                                                               tuple(by_key[d.key].desired for _, d in items)))
    now = {p.desired.key: p for p in replanned if not p.awaits_crd}
    client = await target.client()
    async with anyio.create_task_group() as tg:
        for i, d in items:
            p = now.get(by_key[d.key].desired.key)
            if p is None:
                why = next((e for e in errors if str(d.key) in e), "")
                results[i] = dataclasses.replace(
                    d, action=Action.REVERT_FAILED,
                    reason=f"its CustomResourceDefinition is not established, or defines another kind {why}".strip())
                continue
            tg.start_soon(_revert_one, client, ks.human_managers, p, d, dry_run, results, i)


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
        body=apply_body(p, live), content_type=APPLY_PATCH, sensitive=p.desired.sensitive)


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
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{segment(key.name)}"
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
