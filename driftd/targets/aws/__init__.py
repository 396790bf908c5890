"""AWS target: the only package that imports aioboto3/aiobotocore/botocore (in session.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .target import AwsTarget

__all__ = ["AwsTarget"]


def __getattr__(name: str) -> Any:
    # Lazy: `driftd permissions` and --help must not pay for importing botocore.
    if name == "AwsTarget":
        from .target import AwsTarget

        return AwsTarget
    raise AttributeError(name)
