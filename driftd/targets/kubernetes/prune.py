"""Deleting orphaned objects: only what an earlier revision declared, and only when it is safe.

Refused (every orphan gets action ``skipped`` with the reason) when the environment does not
set ``prune = true``, when the desired set is empty (a broken render looks exactly like
"delete everything"), or when the deletions would exceed ``prune_max_fraction`` of what is
managed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import DriftdError
from ...log import get_logger
from ...model import Action, DesiredState, Drift
from .client import Conflict, NotFound
from .ports import ClusterAccess

if TYPE_CHECKING:
    from ...config import EnvironmentSettings

log = get_logger(__name__)


def refusal(env: EnvironmentSettings, desired: DesiredState, n_orphans: int) -> str | None:
    ks = env.kubernetes
    if ks is None or not ks.prune:
        return "prune is off for this environment (set prune = true to delete orphaned objects)"
    if not desired.kubernetes:
        return "the desired state is empty: refusing to prune everything"
    fraction = n_orphans / (len(desired.kubernetes) + n_orphans)
    if fraction > ks.prune_max_fraction:
        return (f"would delete {n_orphans} object(s), {fraction:.0%} of those managed, above "
                f"prune_max_fraction {ks.prune_max_fraction:.0%}")
    return None


# Deleting one of these cascades (a Namespace takes everything in it, a CRD every object of its
# kinds) or destroys data (a PVC's volume): never pruned unless the environment opts in per kind.
PROTECTED_KINDS = ("Namespace", "CustomResourceDefinition", "PersistentVolumeClaim")


def protected(env: EnvironmentSettings, kind: str) -> str | None:
    ks = env.kubernetes
    if kind in PROTECTED_KINDS and (ks is None or kind not in ks.prune_kinds):
        return (f"a {kind} is never pruned (deleting it cascades or destroys data) unless the environment's "
                f"prune_kinds includes {kind!r}")
    return None


async def prune(target: ClusterAccess, env: EnvironmentSettings, desired: DesiredState,
                orphans: Sequence[Drift], *, dry_run: bool = False) -> list[Drift]:
    if not orphans:
        return []
    why = refusal(env, desired, len(orphans))
    if why:
        return [dataclasses.replace(d, action=Action.SKIPPED, reason=why) for d in orphans]
    kept = {i: r for i, d in enumerate(orphans) if (r := protected(env, d.key.kind)) is not None}
    if kept:
        rest = await prune(target, env, desired, [d for i, d in enumerate(orphans) if i not in kept], dry_run=dry_run)
        it = iter(rest)
        return [dataclasses.replace(d, action=Action.SKIPPED, reason=kept[i]) if i in kept else next(it)
                for i, d in enumerate(orphans)]
    client = await target.client()
    disc = await target.discovery()
    out = []
    for d in orphans:
        try:
            if d.judged is None:
                # Never delete what was not seen: without the judged uid and version, the object the
                # DELETE reaches may not be the one found orphaned.
                out.append(dataclasses.replace(d, action=Action.SKIPPED,
                                               reason="not deleted: the live object's uid and version were not read"))
                continue
            info = await disc.resolve(d.key.api_version, d.key.kind)
            uid, version = d.judged
            await client.request("DELETE", info.path(d.key.namespace, d.key.name), verb="delete",
                                 resource=info.label, subject=str(d.key),
                                 query={"dryRun": "All" if dry_run else None},
                                 body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                                       "preconditions": {"uid": uid, "resourceVersion": version}})
        except NotFound:
            out.append(dataclasses.replace(d, action=Action.REVERTED, reason="already gone"))
            continue
        except Conflict:
            # Recreated, re-marked or edited since it was judged (the live view can be seconds old).
            out.append(dataclasses.replace(d, action=Action.SKIPPED,
                                           reason="not deleted: the object changed since it was judged orphaned; "
                                                  "decided again at the next pass"))
            continue
        except DriftdError as e:
            out.append(dataclasses.replace(d, action=Action.REVERT_FAILED, reason=e.message))
            continue
        log.info("prune.deleted", object=str(d.key), dry_run=dry_run)
        out.append(dataclasses.replace(d, action=Action.SKIPPED if dry_run else Action.REVERTED,
                                       reason="dry run: would delete" if dry_run else None))
    return out
