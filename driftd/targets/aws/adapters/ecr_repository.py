"""AWS::ECR::Repository as a table: ImageTagMutability, ImageScanningConfiguration, EncryptionConfiguration, Tags.

Reads: one paginated DescribeRepositories for the region (1,000 a page; asking by name fails the whole call
when one is missing), ListTagsForResource per repository only when tags are declared (or the unmanaged view
has a tag filter). Revert: one Put call per drifted setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....diff.aws_compare import canonical_scalar
from ..registry import register
from ..spec import Create, ListCall, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv


def _scan(props: Mapping[str, Any]) -> bool:
    return bool(canonical_scalar((props.get("ImageScanningConfiguration") or {}).get("ScanOnPush", False)) == "true")


def _encryption(r: Mapping[str, Any]) -> dict[str, Any]:
    enc = r.get("encryptionConfiguration") or {}
    return {"EncryptionType": enc.get("encryptionType", "AES256"), **({"KmsKey": enc["kmsKey"]} if enc.get("kmsKey")
                                                                      else {})}


def _create(name: str, p: Mapping[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {"repositoryName": name}
    if p.get("ImageTagMutability"):
        params["imageTagMutability"] = p["ImageTagMutability"]
    if isinstance(p.get("ImageScanningConfiguration"), Mapping):
        params["imageScanningConfiguration"] = {"scanOnPush": _scan(p)}
    enc = p.get("EncryptionConfiguration")
    if isinstance(enc, Mapping):
        params["encryptionConfiguration"] = {"encryptionType": enc.get("EncryptionType", "AES256"),
                                             **({"kmsKey": enc["KmsKey"]} if enc.get("KmsKey") else {})}
    if tags:
        params["tags"] = kv(tags)
    return params


@register
class Repository(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::ECR::Repository", service="ecr", name_property="RepositoryName",
        list=ListCall("describe_repositories", "repositories", ("nextToken", "nextToken"), {"maxResults": 1000}),
        item_id=lambda r: str(r["repositoryName"]),
        ids=lambda r: {"Arn": r["repositoryArn"], "RepositoryName": r["repositoryName"]},
        props={"ImageTagMutability": Prop("imageTagMutability"),
               "ImageScanningConfiguration": Prop(lambda r: {"ScanOnPush": bool(
                   (r.get("imageScanningConfiguration") or {}).get("scanOnPush"))}),
               "EncryptionConfiguration": Prop(_encryption)},
        tags=Tags(read=Read("list_tags_for_resource", lambda r: {"resourceArn": r["repositoryArn"]}),
                  result_key="tags",
                  set_op="tag_resource", set_params=lambda live, t: {"resourceArn": live["Arn"], "tags": kv(t)},
                  unset_op="untag_resource", unset_params=lambda live, k: {"resourceArn": live["Arn"], "tagKeys": k}),
        writes=(Write("put_image_tag_mutability", frozenset({"ImageTagMutability"}),
                      lambda live, p: {"repositoryName": live["RepositoryName"],
                                       "imageTagMutability": p["ImageTagMutability"]}),
                Write("put_image_scanning_configuration", frozenset({"ImageScanningConfiguration"}),
                      lambda live, p: {"repositoryName": live["RepositoryName"],
                                       "imageScanningConfiguration": {"scanOnPush": _scan(p)}})),
        immutable=frozenset({"EncryptionConfiguration"}),
        create=Create("create_repository", _create),
    )
