"""The AWS target's own error type, in a module of its own: ``session`` raises it and the adapters
(through ``base``) catch it, and neither has to import the other for it."""

from __future__ import annotations

from ...errors import TargetError


class ApiError(TargetError):
    """An AWS API error other than throttling or a denied permission. ``code`` is AWS's error code."""

    def __init__(self, message: str, *, code: str, operation: str, subject: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message, subject=subject, retryable=retryable)
        self.code = code
        self.operation = operation
