"""``driftd validate``: the config (already loaded) and every environment's desired state."""

from __future__ import annotations

from ..config import Config


def validate(config: Config) -> list[str]:
    """Every problem found, each naming its file and location. Empty means valid."""
    # Desired-state parsing joins here once sources exist (issue: desired state from Git).
    return []
