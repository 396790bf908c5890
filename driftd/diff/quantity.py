"""Kubernetes resource quantities (``2000m``, ``1Gi``, ``1e3``), read only as far as driftd needs.

driftd never computes the server's canonical form itself (its rules on formats are subtle: the
API server stores ``1000`` and ``1k`` differently); it only tells whether a value *looks like* a
quantity and whether two quantities are the same amount, to check what it learns from the
server (compare.py) before trusting it.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                 r"(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$")
_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def amount(v: Any) -> Decimal | None:
    """The exact amount of a quantity-shaped value (a string such as ``2000m``, or a number), else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    if not isinstance(v, str):
        return None
    m = _RE.match(v)
    if m is None:
        return None
    try:
        base = Decimal(m.group(1))
        if m.group(2) is not None:
            return base.scaleb(int(m.group(2)))
        return base * _SUFFIX[m.group(3) or ""]
    except (InvalidOperation, ValueError):
        return None


def same_amount(a: Any, b: Any) -> bool:
    x, y = amount(a), amount(b)
    return x is not None and y is not None and x == y
