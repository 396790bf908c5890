"""Least-privilege IAM policy for driftd, built from the adapters' declarations.

Pure data: importing this module does not import a client library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import registry
from .actions import iam_action as iam_action  # re-exported: tests and the CLI map counted calls with it

# Calls the target makes beyond any one adapter.
COMMON_READ = ("cloudtrail:LookupEvents",)

def actions(types: Iterable[str], enforce: bool) -> tuple[list[str], list[str]]:
    """(read actions, write actions) for these CloudFormation types; unknown types are ignored."""
    adapters = registry.adapters()
    read: set[str] = set(COMMON_READ)
    write: set[str] = set()
    for t in types:
        a = adapters.get(t)
        if a is None:
            continue
        read.update(a.read_permissions)
        if enforce:
            write.update(a.revert_permissions)
    return sorted(read), sorted(write - read)


def iam_policy(types: Iterable[str], enforce: bool) -> dict[str, Any]:
    """An IAM policy document: read actions for observe/alert, read + write for enforce."""
    read, write = actions(types, enforce)
    statements: list[dict[str, Any]] = [
        {"Sid": "DriftdRead", "Effect": "Allow", "Action": read, "Resource": "*"}]
    if write:
        statements.append({"Sid": "DriftdRevert", "Effect": "Allow", "Action": write, "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}
