"""AWS::S3::Bucket as a table: versioning, encryption, public access block, tags, lifecycle rules.

S3 has no batch describe: one ListBuckets for existence (and the unmanaged view), then per bucket one Get call
per declared (or baselined) property only. Revert: one Put call per drifted property; tags as a whole set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from ....diff.aws_compare import CompareSpec
from ....model import AwsDeclaration
from ..base import Ctx, Live
from ..registry import register
from ..spec import Create, ListCall, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv

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


def _get(operation: str, *absent: str) -> Read:
    """A per-bucket Get; ``absent`` codes: the bucket has none of it."""
    return Read(operation, lambda b: {"Bucket": b["Name"]}, absent=absent)


_READS = (_get("get_bucket_versioning"),
          _get("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
          _get("get_public_access_block", "NoSuchPublicAccessBlockConfiguration"),
          _get("get_bucket_policy", "NoSuchBucketPolicy"),
          _get("get_bucket_acl"),
          _get("get_bucket_ownership_controls", "OwnershipControlsNotFoundError"),
          _get("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"))
VERSIONING, ENCRYPTION, PAB, POLICY, ACL, OWNERSHIP, LIFECYCLE = range(len(_READS))


def _pab(a: Mapping[str, Any]) -> dict[str, bool]:
    cfg = a.get("PublicAccessBlockConfiguration") or {}
    return {k: bool(cfg.get(k, False)) for k in PAB_KEYS}  # none configured reads as all false


def _pab_normal(v: Any) -> Any:
    return {k: bool(str(x).lower() == "true") for k, x in v.items()} if isinstance(v, Mapping) else v


def _encryption(a: Mapping[str, Any]) -> dict[str, Any] | None:
    if "ServerSideEncryptionConfiguration" not in a:
        return None
    return {"ServerSideEncryptionConfiguration": [_sse_to_cfn(r) for r in
                                                  a["ServerSideEncryptionConfiguration"].get("Rules") or []]}


def _acl(a: Mapping[str, Any]) -> list[str]:
    owner = (a.get("Owner") or {}).get("ID")
    return sorted(f"{_grantee(g.get('Grantee') or {}, owner)}:{g.get('Permission')}" for g in a.get("Grants") or [])


def _put(operation: str, prop: str, build: Any) -> Write:
    return Write(operation, frozenset({prop}), lambda live, p: {"Bucket": live["Bucket"], **build(p[prop])}
                 if isinstance(p.get(prop), Mapping) else None)


_WRITES = (
    _put("put_bucket_versioning", "VersioningConfiguration",
         lambda v: {"VersioningConfiguration": {"Status": v.get("Status", "Enabled")}}),
    _put("put_bucket_encryption", "BucketEncryption", lambda v: {"ServerSideEncryptionConfiguration": {
        "Rules": [_sse_to_api(r) for r in v.get("ServerSideEncryptionConfiguration") or []]}}),
    _put("put_public_access_block", "PublicAccessBlockConfiguration",
         lambda v: {"PublicAccessBlockConfiguration": {k: bool(v.get(k, False)) for k in PAB_KEYS}}),
    _put("put_bucket_lifecycle_configuration", "LifecycleConfiguration", lambda v: {
        "LifecycleConfiguration": {"Rules": [lifecycle_rule_to_api(r) for r in v.get("Rules") or []]}}))


@register
class Bucket(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::S3::Bucket", service="s3", name_property="BucketName",
        list=BUCKETS,
        item_id=lambda b: str(b["Name"]),
        ids=lambda b: {"Bucket": b["Name"]},
        reads=_READS,
        props={
            # Never enabled reads as no Status; for a declaration that is "Suspended".
            "VersioningConfiguration": Prop(lambda a: {"Status": a.get("Status") or "Suspended"}, source=VERSIONING),
            "BucketEncryption": Prop(_encryption, source=ENCRYPTION),
            "PublicAccessBlockConfiguration": Prop(_pab, source=PAB, normalize=_pab_normal),
            "LifecycleConfiguration": Prop(lambda a: {"Rules": [lifecycle_rule_to_cfn(r) for r in a["Rules"]]}
                                           if "Rules" in a else None, source=LIFECYCLE),
            # driftd's names (no such CloudFormation property): whether a bucket policy exists, the ACL's grants
            # as "grantee:permission"; OwnershipControls is read for its baseline only.
            "BucketPolicyPresent": Prop(lambda a: "Policy" in a, source=POLICY),
            "AccessControl": Prop(_acl, source=ACL),
            "OwnershipControls": Prop(lambda a: {"Rules": [{"ObjectOwnership": r.get("ObjectOwnership")} for r in
                                                           (a.get("OwnershipControls") or {}).get("Rules") or []]},
                                      source=OWNERSHIP)},
        tags=Tags(read=_get("get_bucket_tagging", "NoSuchTagSet"), result_key="TagSet", whole=True,
                  set_op="put_bucket_tagging", set_params=lambda live, t: {"Bucket": live["Bucket"],
                                                                           "Tagging": {"TagSet": kv(t)}},
                  unset_op="delete_bucket_tagging", unset_params=lambda live, k: {"Bucket": live["Bucket"]}),
        compare=CompareSpec(sets={"/LifecycleConfiguration/Rules": _lifecycle_id}, closed=("/Tags",)),
        writes=_WRITES,
        create=Create("create_bucket", lambda name, p, tags: {"Bucket": name}, then=_WRITES, needs_tags_after=True,
                      id_from=lambda name, a: {"Bucket": name},
                      regional=lambda region: {} if region == "us-east-1" else {
                          "CreateBucketConfiguration": {"LocationConstraint": region}}),
        baseline_only=frozenset({"BucketPolicyPresent", "AccessControl", "OwnershipControls"}),
    )
    baseline_properties = ("BucketPolicyPresent", "AccessControl", "OwnershipControls",
                           "PublicAccessBlockConfiguration")
    restorable = frozenset({"PublicAccessBlockConfiguration"})

    async def restore(self, ctx: Ctx, decl: AwsDeclaration, live: Live, prop: str, value: Any) -> None:
        if prop != "PublicAccessBlockConfiguration":
            await super().restore(ctx, decl, live, prop, value)
            return
        bucket = self.physical_id(decl)
        if isinstance(value, Mapping) and any(value.values()):
            await self.write(ctx, "put_public_access_block", Bucket=bucket,
                             PublicAccessBlockConfiguration={k: bool(value.get(k, False)) for k in PAB_KEYS})
        else:
            await self.write(ctx, "delete_public_access_block", Bucket=bucket)
