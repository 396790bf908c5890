"""Lease bookkeeping for replicas sharing environments. Pure: no clock of its own, no client.

A lease is read as a plain record (``LeaseRecord``) whatever stores it (``coordination.k8s.io``
Leases in practice, see ``driftd.targets.kubernetes.leases``).

Expiry is judged the way client-go's leader election does it, by *observation* on the local
monotonic clock, never by comparing the holder's ``renewTime`` with our wall clock: a lease is
expired when it has not changed for its whole duration since we first saw its current version.
Clock skew between hosts therefore cannot make a replica take over a lease that is still being
renewed. The price: a lease first seen at start-up counts as live for one duration, so a freshly
started replica waits that long before taking over a dead replica's environments.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class LeaseKind(StrEnum):
    MEMBER = "member"  # one per replica: "I am alive", the input of rendezvous hashing
    ENVIRONMENT = "environment"  # one per environment: who may act on it now


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    kind: LeaseKind
    subject: str  # the replica identity (member) or the environment name
    holder: str  # "" when released
    duration: float  # seconds
    version: str  # changes on every write (resourceVersion): optimistic concurrency and observation
    annotations: Mapping[str, str] = field(default_factory=dict)
    transitions: int = 0  # how often the holder changed


_UNSAFE = re.compile(r"[^a-z0-9-]+")


def lease_name(group: str, kind: LeaseKind, subject: str) -> str:
    """A valid Kubernetes object name (DNS-1123 label, <= 63) for a lease. Environment names may hold
    capitals, ``_`` and ``.``, so the readable part is sanitized and a hash of the exact subject keeps
    two names that sanitize alike apart."""
    digest = hashlib.sha256(f"{group}\0{kind}\0{subject}".encode()).hexdigest()[:8]
    readable = _UNSAFE.sub("-", subject.lower()).strip("-")
    prefix = f"{_UNSAFE.sub('-', group.lower()).strip('-') or 'driftd'}-{'m' if kind is LeaseKind.MEMBER else 'e'}-"
    room = 63 - len(prefix) - 9
    return f"{prefix}{readable[:room].strip('-') or 'x'}-{digest}"


class Observer:
    """Remembers when each lease's current version was first seen (monotonic seconds)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str, float]] = {}  # name -> (version, holder, since)

    def observe(self, records: Iterable[LeaseRecord], now: float) -> None:
        names = set()
        for r in records:
            names.add(r.name)
            prev = self._seen.get(r.name)
            if prev is None or prev[0] != r.version or prev[1] != r.holder:
                self._seen[r.name] = (r.version, r.holder, now)
        for gone in set(self._seen) - names:  # deleted leases
            del self._seen[gone]

    def expired(self, r: LeaseRecord, now: float) -> bool:
        """Free to take: released, or unchanged for its whole duration as far as we have watched it."""
        if not r.holder:
            return True
        seen = self._seen.get(r.name)
        since = seen[2] if seen is not None and seen[0] == r.version else now
        return now - since >= r.duration


def live_members(records: Iterable[LeaseRecord], observer: Observer, now: float) -> frozenset[str]:
    return frozenset(r.subject for r in records
                     if r.kind is LeaseKind.MEMBER and r.holder and not observer.expired(r, now))
