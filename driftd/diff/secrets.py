"""Secret values never leave the process: changes under a Secret's ``data``/``stringData`` keep their
path and lose their values. A value that is a map (the whole ``data``) keeps its keys, values masked."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..model import REDACTED, Change

_SECRET_ROOTS = ("/data", "/stringData")
# The last-applied annotation carries a Secret's values in clear text.
_LAST_APPLIED = "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"


def is_secret(kind: str) -> bool:
    return kind == "Secret"


def _sensitive(path: str) -> bool:
    return any(path == r or path.startswith(r + "/") for r in (*_SECRET_ROOTS, _LAST_APPLIED))


def _mask(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: _mask(x) for k, x in v.items()}
    return REDACTED


def redact_changes(kind: str, changes: Iterable[Change], *, sensitive: bool = False) -> list[Change]:
    """``sensitive``: the object came from an encrypted file, so every value is masked, not only a Secret's."""
    if sensitive:
        return [dataclasses.replace(c, expected=_mask(c.expected), actual=_mask(c.actual)) for c in changes]
    if not is_secret(kind):
        return list(changes)
    return [dataclasses.replace(c, expected=_mask_at(c.path, c.expected), actual=_mask_at(c.path, c.actual))
            for c in changes]


def _mask_at(path: str, v: Any) -> Any:
    """Mask values below the sensitive roots of a value found at ``path``."""
    if v is None:
        return None
    if _sensitive(path):
        return _mask(v)
    if isinstance(v, dict):
        return {k: _mask_at(f"{path}/{k.replace('~', '~0').replace('/', '~1')}", x) for k, x in v.items()}
    return v


def redact_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Secret safe to show: values masked, keys kept."""
    if obj.get("kind") != "Secret":
        return obj
    return _mask_at("", obj)  # type: ignore[no-any-return]
