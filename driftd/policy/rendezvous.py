"""Which replica should act on which environment: rendezvous (highest-random-weight) hashing. Pure.

Every replica computes the same answer from the same member list with no communication: each
(member, environment) pair gets a pseudo-random weight and the environment goes to the member with
the highest one. A member joining takes over only the environments whose new weight beats the old
winner (about 1/n of them); a member leaving gives up only its own, spread over the others. That is
why it is used instead of ``hash(env) % n``, which would reshuffle almost everything on every change.

The weight is a keyed BLAKE2b of the two names, not Python's ``hash()``: that one is salted per
process, and the replicas must agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def weight(member: str, environment: str) -> int:
    """The pair's weight: 64 bits of BLAKE2b over both names, with an unambiguous separator."""
    h = hashlib.blake2b(f"{len(member)}:{member}|{environment}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def owner(environment: str, members: Iterable[str]) -> str | None:
    """The member that should hold ``environment`` (None when there is no member). Ties, vanishingly
    rare with 64 bits, go to the smaller name so that every replica still agrees."""
    best: tuple[int, str] | None = None
    for m in members:
        w = weight(m, environment)
        if best is None or w > best[0] or (w == best[0] and m < best[1]):
            best = (w, m)
    return None if best is None else best[1]


def assign(environments: Iterable[str], members: Iterable[str]) -> Mapping[str, str | None]:
    """``{environment: owner}`` for every environment."""
    ms = sorted(set(members))
    return {e: owner(e, ms) for e in environments}
