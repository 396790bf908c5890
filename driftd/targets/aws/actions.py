"""API operation -> the IAM action that authorizes it (a leaf: spec tables derive their actions with it, and the
permissions module builds policies from them)."""

from __future__ import annotations

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
