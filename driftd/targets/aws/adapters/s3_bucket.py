"""AWS::S3::Bucket: versioning, encryption, public access block, tags, lifecycle rules.

S3 has no batch describe: one ListBuckets for existence (and the unmanaged
view), then per bucket one Get call per declared property only. Revert: one
Put call per drifted property.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from ....diff.aws_compare import CompareSpec, tags_to_map
from ....model import AwsDeclaration, Change
from ..base import Adapter, ApiError, Ctx, Live, changed_top, desired_tags, kv_tags, per_resource, resolved
from ..registry import register
from ..spec import ListCall

PAB_KEYS = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")


def _lifecycle_id(rule: Any) -> str:
    if isinstance(rule, Mapping) and rule.get("Id"):
        return str(rule["Id"])
    return hashlib.sha256(json.dumps(rule, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _iso(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if isinstance(v, date):
        return v.isoformat()
    return v


def lifecycle_rule_to_cfn(r: Mapping[str, Any]) -> dict[str, Any]:
    """S3 API lifecycle rule -> CloudFormation ``Rule`` shape."""
    out: dict[str, Any] = {"Status": r.get("Status")}
    if r.get("ID"):
        out["Id"] = r["ID"]
    f = r.get("Filter") or {}
    and_ = f.get("And") or {}
    prefix = r.get("Prefix") if r.get("Prefix") is not None else f.get("Prefix", and_.get("Prefix"))
    if prefix:
        out["Prefix"] = prefix
    tags = ([f["Tag"]] if f.get("Tag") else []) + list(and_.get("Tags") or [])
    if tags:
        out["TagFilters"] = [{"Key": t["Key"], "Value": t["Value"]} for t in tags]
    for k in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        v = f.get(k, and_.get(k))
        if v is not None:
            out[k] = v
    exp = r.get("Expiration") or {}
    if exp.get("Days") is not None:
        out["ExpirationInDays"] = exp["Days"]
    if exp.get("Date") is not None:
        out["ExpirationDate"] = _iso(exp["Date"])
    if exp.get("ExpiredObjectDeleteMarker") is not None:
        out["ExpiredObjectDeleteMarker"] = exp["ExpiredObjectDeleteMarker"]
    nve = r.get("NoncurrentVersionExpiration") or {}
    if nve.get("NoncurrentDays") is not None:
        out["NoncurrentVersionExpirationInDays"] = nve["NoncurrentDays"]
        out["NoncurrentVersionExpiration"] = {k: v for k, v in nve.items()}
    if r.get("Transitions"):
        out["Transitions"] = [{k2: v for k2, v in (("StorageClass", t.get("StorageClass")),
                                                   ("TransitionInDays", t.get("Days")),
                                                   ("TransitionDate", _iso(t.get("Date")))) if v is not None}
                              for t in r["Transitions"]]
    if r.get("NoncurrentVersionTransitions"):
        out["NoncurrentVersionTransitions"] = [{"StorageClass": t.get("StorageClass"),
                                                "TransitionInDays": t.get("NoncurrentDays")}
                                               for t in r["NoncurrentVersionTransitions"]]
    if r.get("AbortIncompleteMultipartUpload"):
        out["AbortIncompleteMultipartUpload"] = dict(r["AbortIncompleteMultipartUpload"])
    return out


def lifecycle_rule_to_api(r: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation ``Rule`` -> S3 API lifecycle rule."""
    out: dict[str, Any] = {"Status": r.get("Status", "Enabled")}
    if r.get("Id"):
        out["ID"] = r["Id"]
    tags = [{"Key": t["Key"], "Value": t["Value"]} for t in r.get("TagFilters") or []]
    sizes = {k: int(r[k]) for k in ("ObjectSizeGreaterThan", "ObjectSizeLessThan") if r.get(k) is not None}
    prefix = r.get("Prefix")
    if len(tags) + (1 if prefix else 0) + len(sizes) > 1:
        and_: dict[str, Any] = dict(sizes)
        if prefix:
            and_["Prefix"] = prefix
        if tags:
            and_["Tags"] = tags
        out["Filter"] = {"And": and_}
    elif tags:
        out["Filter"] = {"Tag": tags[0]}
    elif sizes:
        out["Filter"] = dict(sizes)
    else:
        out["Filter"] = {"Prefix": prefix or ""}
    exp: dict[str, Any] = {}
    if r.get("ExpirationInDays") is not None:
        exp["Days"] = int(r["ExpirationInDays"])
    if r.get("ExpirationDate"):
        exp["Date"] = r["ExpirationDate"]
    if r.get("ExpiredObjectDeleteMarker") is not None:
        exp["ExpiredObjectDeleteMarker"] = bool(r["ExpiredObjectDeleteMarker"])
    if exp:
        out["Expiration"] = exp
    nve = dict(r.get("NoncurrentVersionExpiration") or {})
    if r.get("NoncurrentVersionExpirationInDays") is not None:
        nve["NoncurrentDays"] = int(r["NoncurrentVersionExpirationInDays"])
    if nve:
        out["NoncurrentVersionExpiration"] = {k: int(v) for k, v in nve.items()}
    if r.get("Transitions"):
        out["Transitions"] = [{k: v for k, v in (("StorageClass", t.get("StorageClass")),
                                                 ("Days", int(t["TransitionInDays"]) if t.get("TransitionInDays")
                                                  is not None else None),
                                                 ("Date", t.get("TransitionDate"))) if v is not None}
                              for t in r["Transitions"]]
    if r.get("NoncurrentVersionTransitions"):
        out["NoncurrentVersionTransitions"] = [{"StorageClass": t["StorageClass"],
                                                "NoncurrentDays": int(t["TransitionInDays"])}
                                               for t in r["NoncurrentVersionTransitions"]]
    if r.get("AbortIncompleteMultipartUpload"):
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return out


def _sse_to_cfn(rule: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rule.items() if k != "ApplyServerSideEncryptionByDefault"}
    if "ApplyServerSideEncryptionByDefault" in rule:
        out["ServerSideEncryptionByDefault"] = rule["ApplyServerSideEncryptionByDefault"]
    return out


def _sse_to_api(rule: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in rule.items() if k != "ServerSideEncryptionByDefault"}
    if "ServerSideEncryptionByDefault" in rule:
        out["ApplyServerSideEncryptionByDefault"] = dict(rule["ServerSideEncryptionByDefault"])
    if "BucketKeyEnabled" in out:
        out["BucketKeyEnabled"] = str(out["BucketKeyEnabled"]).lower() == "true"
    return out


def _grantee(g: Mapping[str, Any], owner: str | None) -> str:
    """An ACL grantee as a short stable name: the owner, a group (AllUsers = public), or the account id."""
    if g.get("URI"):
        return "group/" + str(g["URI"]).rsplit("/", 1)[-1]
    if g.get("ID") and g.get("ID") == owner:
        return "owner"
    return str(g.get("ID") or g.get("EmailAddress") or g.get("Type"))


# Buckets of this region (one call per 10,000 buckets), listed once a pass for Bucket and the BucketPolicy table.
_CURSOR = ("ContinuationToken", "ContinuationToken")
BUCKETS = ListCall("list_buckets", "Buckets", _CURSOR, {"MaxBuckets": 10000}, region_param="BucketRegion",
                   memo="s3:buckets")


async def list_bucket_names(ctx: Ctx) -> set[str]:
    async def fetch() -> list[dict[str, Any]]:
        return await ctx.paginate("s3", BUCKETS.operation, BUCKETS.result_key, cursor=_CURSOR,
                                  **{**BUCKETS.params, BUCKETS.region_param: ctx.region})
    items: list[dict[str, Any]] = await ctx.once(BUCKETS.memo, fetch)  # the same memo as the table's list
    return {str(b["Name"]) for b in items}


async def _optional(ctx: Ctx, op: str, bucket: str, absent: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        return await ctx.call("s3", op, Bucket=bucket)
    except ApiError as e:
        if e.code in absent:
            return None
        raise


@register
class Bucket(Adapter):
    type_name = "AWS::S3::Bucket"
    service = "s3"
    name_property = "BucketName"
    properties = frozenset({"BucketName", "VersioningConfiguration", "BucketEncryption",
                            "PublicAccessBlockConfiguration", "Tags", "LifecycleConfiguration"})
    read_permissions = ("s3:ListAllMyBuckets", "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration",
                        "s3:GetBucketPublicAccessBlock", "s3:GetBucketTagging", "s3:GetLifecycleConfiguration",
                        "s3:GetBucketPolicy", "s3:GetBucketAcl", "s3:GetBucketOwnershipControls")
    revert_permissions = ("s3:CreateBucket", "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration",
                          "s3:PutBucketPublicAccessBlock", "s3:PutBucketTagging", "s3:PutLifecycleConfiguration")
    spec = CompareSpec(sets={"/LifecycleConfiguration/Rules": _lifecycle_id}, closed=("/Tags",))
    # BucketPolicyPresent and AccessControl are driftd's names (no such CloudFormation property): whether a
    # bucket policy exists, and the ACL's grants as "grantee:permission".
    baseline_properties = ("BucketPolicyPresent", "AccessControl", "OwnershipControls",
                           "PublicAccessBlockConfiguration")
    restorable = frozenset({"PublicAccessBlockConfiguration"})

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        if prop != "PublicAccessBlockConfiguration":
            await super().restore(ctx, decl, live, prop, value)
            return
        bucket = self.physical_id(decl)
        if isinstance(value, Mapping) and any(value.values()):
            await ctx.call("s3", "put_public_access_block", Bucket=bucket,
                           PublicAccessBlockConfiguration={k: bool(value.get(k, False)) for k in PAB_KEYS})
        else:
            await ctx.call("s3", "delete_public_access_block", Bucket=bucket)

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = super().normalize(props)
        pab = out.get("PublicAccessBlockConfiguration")
        if isinstance(pab, Mapping):
            out["PublicAccessBlockConfiguration"] = {k: bool(str(v).lower() == "true") for k, v in pab.items()}
        return out

    async def _read_one(self, ctx: Ctx, bucket: str, props: set[str]) -> Live:
        live: Live = {"BucketName": bucket}
        if "VersioningConfiguration" in props:
            v = await ctx.call("s3", "get_bucket_versioning", Bucket=bucket)
            # Never enabled reads as no Status; for a declaration that is "Suspended".
            live["VersioningConfiguration"] = {"Status": v.get("Status") or "Suspended"}
        if "BucketEncryption" in props:
            e = await _optional(ctx, "get_bucket_encryption", bucket,
                                ("ServerSideEncryptionConfigurationNotFoundError",))
            if e is not None:
                rules = (e.get("ServerSideEncryptionConfiguration") or {}).get("Rules") or []
                live["BucketEncryption"] = {"ServerSideEncryptionConfiguration": [_sse_to_cfn(r) for r in rules]}
        if "PublicAccessBlockConfiguration" in props:
            p = await _optional(ctx, "get_public_access_block", bucket, ("NoSuchPublicAccessBlockConfiguration",))
            cfg = (p or {}).get("PublicAccessBlockConfiguration") or {}
            live["PublicAccessBlockConfiguration"] = {k: bool(cfg.get(k, False)) for k in PAB_KEYS}
        if "Tags" in props:
            t = await _optional(ctx, "get_bucket_tagging", bucket, ("NoSuchTagSet",))
            live["Tags"] = (t or {}).get("TagSet") or []
        if "BucketPolicyPresent" in props:
            live["BucketPolicyPresent"] = await _optional(ctx, "get_bucket_policy", bucket,
                                                          ("NoSuchBucketPolicy",)) is not None
        if "AccessControl" in props:
            acl = await ctx.call("s3", "get_bucket_acl", Bucket=bucket)
            owner = (acl.get("Owner") or {}).get("ID")
            live["AccessControl"] = sorted(
                f"{_grantee(g.get('Grantee') or {}, owner)}:{g.get('Permission')}" for g in acl.get("Grants") or [])
        if "OwnershipControls" in props:
            oc = await _optional(ctx, "get_bucket_ownership_controls", bucket, ("OwnershipControlsNotFoundError",))
            rules = ((oc or {}).get("OwnershipControls") or {}).get("Rules") or []
            live["OwnershipControls"] = {"Rules": [{"ObjectOwnership": r.get("ObjectOwnership")} for r in rules]}
        if "LifecycleConfiguration" in props:
            lc = await _optional(ctx, "get_bucket_lifecycle_configuration", bucket,
                                 ("NoSuchLifecycleConfiguration",))
            if lc is not None:
                live["LifecycleConfiguration"] = {"Rules": [lifecycle_rule_to_cfn(r) for r in lc.get("Rules") or []]}
        return live

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        existing = await list_bucket_names(ctx)
        props = self.declared(decls, ctx)
        pids = [p for p in (self.physical_id(d) for d in decls) if p in existing]
        return await per_resource(ctx, self.type_name, pids, lambda b: self._read_one(ctx, b, props))

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        names = await list_bucket_names(ctx)
        if not ctx.tag_filter:
            return {n: {} for n in names}
        tagged = await per_resource(ctx, self.type_name, names, lambda b: self._read_one(ctx, b, {"Tags"}))
        return {n: tags_to_map(v.get("Tags")) for n, v in tagged.items()}

    async def _put(self, ctx: Ctx, bucket: str, prop: str, props: Mapping[str, Any], decl: AwsDeclaration) -> None:
        if prop == "VersioningConfiguration":
            await ctx.call("s3", "put_bucket_versioning", Bucket=bucket,
                           VersioningConfiguration={"Status": props[prop].get("Status", "Enabled")})
        elif prop == "BucketEncryption":
            rules = [_sse_to_api(r) for r in props[prop].get("ServerSideEncryptionConfiguration") or []]
            await ctx.call("s3", "put_bucket_encryption", Bucket=bucket,
                           ServerSideEncryptionConfiguration={"Rules": rules})
        elif prop == "PublicAccessBlockConfiguration":
            cfg = {k: bool(props[prop].get(k, False)) for k in PAB_KEYS}
            await ctx.call("s3", "put_public_access_block", Bucket=bucket, PublicAccessBlockConfiguration=cfg)
        elif prop == "Tags":
            await ctx.call("s3", "put_bucket_tagging", Bucket=bucket,
                           Tagging={"TagSet": kv_tags(desired_tags(decl, ctx))})
        elif prop == "LifecycleConfiguration":
            rules = [lifecycle_rule_to_api(r) for r in props[prop].get("Rules") or []]
            await ctx.call("s3", "put_bucket_lifecycle_configuration", Bucket=bucket,
                           LifecycleConfiguration={"Rules": rules})

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        bucket = self.physical_id(decl)
        props = resolved(decl)
        for prop in sorted(changed_top(changes)):
            if prop in props:
                await self._put(ctx, bucket, prop, props, decl)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        bucket = self.physical_id(decl)
        params: dict[str, Any] = {"Bucket": bucket}
        if ctx.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        await ctx.call("s3", "create_bucket", **params)
        ctx.memo.pop("s3:buckets", None)
        props = resolved(decl)
        for prop in ("VersioningConfiguration", "BucketEncryption", "PublicAccessBlockConfiguration",
                     "LifecycleConfiguration"):
            if isinstance(props.get(prop), Mapping):
                await self._put(ctx, bucket, prop, props, decl)
        if decl.properties.get("Tags") or ctx.tag_filter:
            await self._put(ctx, bucket, "Tags", decl.properties, decl)
