"""Least-privilege IAM policy for driftd, built from the adapters' declarations.

Pure data: importing this module does not import a client library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import registry

# Calls the target makes beyond any one adapter.
COMMON_READ = ("cloudtrail:LookupEvents",)

# API operation -> IAM action where they differ (S3 mostly). Everything else is "<prefix>:<Operation>".
_ACTION_FOR = {
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    "s3:PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "s3:DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "s3:DeleteBucketTagging": "s3:PutBucketTagging",
    "s3:HeadBucket": "s3:ListBucket",
    "lambda:ListFunctions20150331": "lambda:ListFunctions",
}
_PREFIX = {"ecr": "ecr", "lambda": "lambda", "autoscaling": "autoscaling", "route53": "route53",
           "elbv2": "elasticloadbalancing"}


def iam_action(operation: str) -> str:
    """``service:Operation`` as counted by the session -> the IAM action that authorizes it."""
    if operation in _ACTION_FOR:
        return _ACTION_FOR[operation]
    service, _, op = operation.partition(":")
    return f"{_PREFIX.get(service, service)}:{op}"


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
