"""AWS::S3::BucketPolicy as a table: the policy document compared as parsed JSON with IAM's equivalences.

Statements are a set (identity: Sid plus a content hash), so an added statement is an ``ADD`` at
``/PolicyDocument/Statement/<id>``. Reads: the region's bucket listing (shared with AWS::S3::Bucket), then one
GetBucketPolicy per declared bucket that exists (a bucket without a policy: the policy is missing). Revert and
create: one PutBucketPolicy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....diff.aws_policy import normalize_policy, parse_policy, statement_id, with_version
from ..registry import register
from ..spec import Create, Prop, Read, SpecAdapter, TypeSpec, Write
from .s3_bucket import BUCKETS


def _put(bucket: str, p: Mapping[str, Any]) -> dict[str, Any]:
    doc = with_version(p.get("PolicyDocument"))
    return {"Bucket": bucket, "Policy": doc if isinstance(doc, str) else json.dumps(doc)}


@register
class BucketPolicy(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::S3::BucketPolicy", service="s3", name_property="Bucket",
        list=BUCKETS,
        item_id=lambda b: str(b["Name"]),
        ids=lambda b: {"Bucket": b["Name"]},
        reads=(Read("get_bucket_policy", lambda b: {"Bucket": b["Name"]},
                    missing=("NoSuchBucketPolicy", "NoSuchBucket")),),
        props={"PolicyDocument": Prop(lambda r: parse_policy(r.get("Policy")), source=0, normalize=normalize_policy)},
        compare=CompareSpec(sets={"/PolicyDocument/Statement": statement_id}),
        writes=(Write("put_bucket_policy", frozenset({"PolicyDocument"}), lambda live, p: _put(live["Bucket"], p)),),
        create=Create("put_bucket_policy", lambda bucket, p, tags: _put(bucket, p)),
        supports_unmanaged=False,  # one call per bucket to know: not worth it for a report-only view
    )
