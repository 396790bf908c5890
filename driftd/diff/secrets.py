"""The secret-value policy, for the diff core's callers: it lives in :mod:`driftd.secrets`, below every
layer that renders or records a value (render, report, state, alerting), so each can apply it."""

from __future__ import annotations

from ..secrets import (
    DEFAULT_NAME_PATTERNS,
    MIN_SCRUB_LENGTH,
    SECRET_KINDS,
    SECRET_PATHS,
    configure,
    is_secret,
    redact_changes,
    redact_object,
    scrub_text,
    scrub_value,
    secret_name,
    secret_path,
    secret_values,
)

__all__ = [
    "DEFAULT_NAME_PATTERNS",
    "MIN_SCRUB_LENGTH",
    "SECRET_KINDS",
    "SECRET_PATHS",
    "configure",
    "is_secret",
    "redact_changes",
    "redact_object",
    "scrub_text",
    "scrub_value",
    "secret_name",
    "secret_path",
    "secret_values",
]
