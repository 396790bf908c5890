"""The RBAC rules driftd needs, for ``driftd permissions``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The server-side-apply dry run is authorised as a real PATCH (dryRun changes nothing, but RBAC
# does not know that), so even a read-only driftd needs "patch"; reverting adds create/delete.
READ = ("get", "list", "watch", "patch")
WRITE = ("create", "delete")


def rbac_rules(kinds: Iterable[tuple[str, str]], enforce: bool) -> list[dict[str, Any]]:
    """ClusterRole rules for (API group, resource) pairs: get/list/watch plus patch (dry runs), and
    create/delete when driftd reverts (enforce mode or ``driftd sync``). One rule per group."""
    by_group: dict[str, set[str]] = {}
    for group, resource in kinds:
        by_group.setdefault(group, set()).add(resource)
    verbs = [*READ, *WRITE] if enforce else list(READ)
    return [{"apiGroups": [g], "resources": sorted(rs), "verbs": verbs} for g, rs in sorted(by_group.items())]
