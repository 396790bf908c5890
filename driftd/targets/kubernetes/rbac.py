"""The RBAC rules driftd needs, for ``driftd permissions``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

READ = ("get", "list", "watch")
WRITE = ("patch", "create", "delete")


def rbac_rules(kinds: Iterable[tuple[str, str]], enforce: bool) -> list[dict[str, Any]]:
    """ClusterRole rules for (API group, resource) pairs: read-only, plus patch/create/delete when
    driftd reverts (enforce mode or ``driftd sync``). One rule per group, resources sorted."""
    by_group: dict[str, set[str]] = {}
    for group, resource in kinds:
        by_group.setdefault(group, set()).add(resource)
    verbs = [*READ, *WRITE] if enforce else list(READ)
    return [{"apiGroups": [g], "resources": sorted(rs), "verbs": verbs} for g, rs in sorted(by_group.items())]
