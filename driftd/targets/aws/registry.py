"""Adapters by CloudFormation type name. Importing the adapters package registers every built-in adapter."""

from __future__ import annotations

from .base import Adapter

_ADAPTERS: dict[str, Adapter] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    """Class decorator: one instance per type; a second adapter for the same type is a programming error."""
    if cls.type_name in _ADAPTERS:
        raise ValueError(f"two adapters for {cls.type_name}")
    _ADAPTERS[cls.type_name] = cls()
    return cls


def _load() -> None:
    from . import adapters  # noqa: F401  (registers on import)


def get(type_name: str) -> Adapter | None:
    _load()
    return _ADAPTERS.get(type_name)


def adapters() -> dict[str, Adapter]:
    _load()
    return dict(_ADAPTERS)


def supported_types() -> list[str]:
    return sorted(adapters())
