"""AWS::S3::BucketPolicy: the policy document compared as parsed JSON with IAM's equivalences.

Statements are a set (identity: Sid plus a content hash), so an added
statement is an ``ADD`` at ``/PolicyDocument/Statement/<id>``. One
GetBucketPolicy per declared bucket; revert is one PutBucketPolicy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....diff.aws_policy import normalize_policy, parse_policy, statement_id, with_version
from ....model import AwsDeclaration, Change
from ..base import Adapter, ApiError, Ctx, Live, per_resource, resolved
from ..registry import register
from .s3_bucket import list_bucket_names


@register
class BucketPolicy(Adapter):
    type_name = "AWS::S3::BucketPolicy"
    service = "s3"
    name_property = "Bucket"
    properties = frozenset({"Bucket", "PolicyDocument"})
    read_permissions = ("s3:ListAllMyBuckets", "s3:GetBucketPolicy")
    revert_permissions = ("s3:PutBucketPolicy",)
    spec = CompareSpec(sets={"/PolicyDocument/Statement": statement_id})
    supports_unmanaged = False  # one call per bucket to know: not worth it for a report-only view
    has_tags = False

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(props)
        if "PolicyDocument" in out:
            out["PolicyDocument"] = normalize_policy(out["PolicyDocument"])
        return out

    async def _read_one(self, ctx: Ctx, bucket: str) -> Live | None:
        try:
            r = await ctx.call("s3", "get_bucket_policy", Bucket=bucket)
        except ApiError as e:
            if e.code in ("NoSuchBucketPolicy", "NoSuchBucket"):
                return None
            raise
        return {"Bucket": bucket, "PolicyDocument": parse_policy(r.get("Policy"))}

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        existing = await list_bucket_names(ctx)
        pids = [p for p in (self.physical_id(d) for d in decls) if p in existing]
        return await per_resource(ctx, self.type_name, pids, lambda b: self._read_one(ctx, b))

    async def _put(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        doc = with_version(resolved(decl).get("PolicyDocument"))
        await ctx.call("s3", "put_bucket_policy", Bucket=self.physical_id(decl),
                       Policy=doc if isinstance(doc, str) else json.dumps(doc))

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        await self._put(ctx, decl)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        await self._put(ctx, decl)
