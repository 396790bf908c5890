"""AWS::ECR::Repository: ImageTagMutability, ImageScanningConfiguration, EncryptionConfiguration, Tags.

Reads: one paginated DescribeRepositories for the region (1,000 a page; asking
by name fails the whole call when one is missing), ListTagsForResource only
when tags are declared. Revert: one Put call per drifted setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar, tags_to_map
from ....model import AwsDeclaration, Change
from ..base import Adapter, Ctx, Live, changed_top, kv_tags, per_resource, resolved, tag_delta
from ..registry import register


def _scan(props: Mapping[str, Any]) -> bool:
    return bool(canonical_scalar((props.get("ImageScanningConfiguration") or {}).get("ScanOnPush", False)) == "true")


@register
class Repository(Adapter):
    type_name = "AWS::ECR::Repository"
    service = "ecr"
    name_property = "RepositoryName"
    properties = frozenset({"RepositoryName", "ImageTagMutability", "ImageScanningConfiguration",
                            "EncryptionConfiguration", "Tags"})
    read_permissions = ("ecr:DescribeRepositories", "ecr:ListTagsForResource")
    revert_permissions = ("ecr:CreateRepository", "ecr:PutImageTagMutability", "ecr:PutImageScanningConfiguration",
                          "ecr:TagResource", "ecr:UntagResource")
    spec = CompareSpec(closed=("/Tags",))

    async def _all(self, ctx: Ctx) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            return await ctx.paginate("ecr", "describe_repositories", "repositories", cursor=("nextToken", "nextToken"),
                                      maxResults=1000)
        repos: list[dict[str, Any]] = await ctx.once("ecr:repositories", fetch)
        return repos

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        props = self.declared(decls)
        by_name = {r["repositoryName"]: r for r in await self._all(ctx)}
        names = [n for n in {self.physical_id(d) for d in decls} if n in by_name]

        async def one(n: str) -> Live:
            r = by_name[n]
            live: Live = {"RepositoryName": n, "Arn": r.get("repositoryArn"),
                          "ImageTagMutability": r.get("imageTagMutability"),
                          "ImageScanningConfiguration": {
                              "ScanOnPush": bool((r.get("imageScanningConfiguration") or {}).get("scanOnPush"))}}
            enc = r.get("encryptionConfiguration") or {}
            live["EncryptionConfiguration"] = {"EncryptionType": enc.get("encryptionType", "AES256"),
                                               **({"KmsKey": enc["kmsKey"]} if enc.get("kmsKey") else {})}
            if "Tags" in props:
                live["Tags"] = (await ctx.call("ecr", "list_tags_for_resource",
                                               resourceArn=r["repositoryArn"])).get("tags") or []
            return live
        return await per_resource(ctx, self.type_name, names, one)

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        repos = {r["repositoryName"]: r["repositoryArn"] for r in await self._all(ctx)}
        if not ctx.tag_filter:
            return {n: {} for n in repos}

        async def tags(n: str) -> Live:
            return {"Tags": (await ctx.call("ecr", "list_tags_for_resource", resourceArn=repos[n])).get("tags")}
        tagged = await per_resource(ctx, self.type_name, repos, tags)
        return {n: tags_to_map(v.get("Tags")) for n, v in tagged.items()}

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = resolved(decl)
        name = self.physical_id(decl)
        if "ImageTagMutability" in top and props.get("ImageTagMutability"):
            await ctx.call("ecr", "put_image_tag_mutability", repositoryName=name,
                           imageTagMutability=props["ImageTagMutability"])
        if "ImageScanningConfiguration" in top:
            await ctx.call("ecr", "put_image_scanning_configuration", repositoryName=name,
                           imageScanningConfiguration={"scanOnPush": _scan(props)})
        if "Tags" in top:
            to_set, to_remove = tag_delta(decl, [{"Key": t["Key"], "Value": t["Value"]}
                                                 for t in live.get("Tags") or []], ctx)
            if to_set:
                await ctx.call("ecr", "tag_resource", resourceArn=live["Arn"], tags=kv_tags(to_set))
            if to_remove:
                await ctx.call("ecr", "untag_resource", resourceArn=live["Arn"], tagKeys=to_remove)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = resolved(decl)
        params: dict[str, Any] = {"repositoryName": self.physical_id(decl)}
        if props.get("ImageTagMutability"):
            params["imageTagMutability"] = props["ImageTagMutability"]
        if isinstance(props.get("ImageScanningConfiguration"), Mapping):
            params["imageScanningConfiguration"] = {"scanOnPush": _scan(props)}
        enc = props.get("EncryptionConfiguration")
        if isinstance(enc, Mapping):
            params["encryptionConfiguration"] = {"encryptionType": enc.get("EncryptionType", "AES256"),
                                                 **({"kmsKey": enc["KmsKey"]} if enc.get("KmsKey") else {})}
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(props.get("Tags")))
        if tags:
            params["tags"] = kv_tags(tags)
        await ctx.call("ecr", "create_repository", **params)
        ctx.memo.pop("ecr:repositories", None)
