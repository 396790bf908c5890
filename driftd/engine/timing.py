"""When periodic work runs again: jitter for polls, capped exponential backoff for retries."""

from __future__ import annotations

import random
from dataclasses import dataclass


def jitter(seconds: float, fraction: float = 0.1) -> float:
    """Spread periodic work so a hundred environments do not poll in the same second."""
    return max(0.0, seconds * (1 + random.uniform(-fraction, fraction)))


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter; ``reset`` on success."""

    base: float = 1.0
    cap: float = 300.0
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(self.base, min(self.cap, self.base * 2 ** min(self.failures, 20)))

    def reset(self) -> None:
        self.failures = 0
