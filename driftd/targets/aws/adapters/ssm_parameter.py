"""AWS::SSM::Parameter: Value, Type, Description, Tags (and the other scalar properties).

A SecureString value is decrypted to compare it and never leaves the process:
a changed value is reported as ``(redacted)`` on both sides. Reads:
GetParameters (10 names a call) for values and types, DescribeParameters only
when a property it alone knows is declared or unmanaged parameters are wanted,
ListTagsForResource per parameter only when tags are declared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, redact, tags_to_map
from ....model import AwsDeclaration, Change
from ..base import Adapter, Ctx, Live, changed_top, chunks, kv_tags, per_resource, resolved, tag_delta
from ..registry import register

SECURE = "SecureString"
_DESCRIBED = ("Description", "AllowedPattern", "Tier", "DataType")
_PUT_KEYS = ("Type", "Description", "AllowedPattern", "Tier", "DataType")


@register
class Parameter(Adapter):
    type_name = "AWS::SSM::Parameter"
    service = "ssm"
    name_property = "Name"
    properties = frozenset({"Name", "Type", "Value", "Description", "AllowedPattern", "Tier", "DataType", "Tags"})
    read_permissions = ("ssm:GetParameters", "ssm:DescribeParameters", "ssm:ListTagsForResource", "kms:Decrypt")
    revert_permissions = ("ssm:PutParameter", "ssm:AddTagsToResource", "ssm:RemoveTagsFromResource", "kms:Encrypt")
    spec = CompareSpec(closed=("/Tags",))

    def compare(self, decl: AwsDeclaration, live: Mapping[str, Any], tag_filter: Mapping[str, str]) -> list[Change]:
        changes = super().compare(decl, live, tag_filter)
        secure = SECURE in (decl.properties.get("Type"), live.get("Type"))
        return [redact(c) if secure and c.path == "/Value" else c for c in changes]

    async def _describe_all(self, ctx: Ctx) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            return await ctx.paginate("ssm", "describe_parameters", "Parameters", MaxResults=50)
        items: list[dict[str, Any]] = await ctx.once("ssm:parameters", fetch)
        return items

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        props = self.declared(decls)
        names = sorted({self.physical_id(d) for d in decls})
        live: dict[str, Live] = {}
        need_describe = ctx.unmanaged or bool(props & set(_DESCRIBED)) or not props & {"Value", "Type"}
        if need_describe:
            if ctx.unmanaged:
                described = await self._describe_all(ctx)
            else:
                described = []
                for part in chunks(names, 50):
                    described += await ctx.paginate(
                        "ssm", "describe_parameters", "Parameters", MaxResults=50,
                        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": list(part)}])
            wanted = set(names)
            for p in described:
                if p["Name"] in wanted:
                    live[p["Name"]] = {"Name": p["Name"], "Type": p.get("Type"), "Description": p.get("Description"),
                                       "AllowedPattern": p.get("AllowedPattern"), "Tier": p.get("Tier"),
                                       "DataType": p.get("DataType")}
        if props & {"Value", "Type"}:
            fetch = [n for n in names if n in live] if need_describe else names
            for part in chunks(fetch, 10):
                r = await ctx.call("ssm", "get_parameters", Names=list(part), WithDecryption=True)
                for p in r.get("Parameters") or []:
                    entry = live.setdefault(p["Name"], {"Name": p["Name"]})
                    entry["Type"] = p.get("Type")
                    entry["Value"] = p.get("Value")
        if "Tags" in props:
            async def tags(name: str) -> Live:
                r = await ctx.call("ssm", "list_tags_for_resource", ResourceType="Parameter", ResourceId=name)
                live[name]["Tags"] = r.get("TagList") or []
                return live[name]
            await per_resource(ctx, self.type_name, list(live), tags)
        return {n: v for n, v in live.items() if (self.type_name, n) not in ctx.failed}

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        names = [p["Name"] for p in await self._describe_all(ctx)]
        if not ctx.tag_filter:
            return {n: {} for n in names}

        async def tags(name: str) -> Live:
            r = await ctx.call("ssm", "list_tags_for_resource", ResourceType="Parameter", ResourceId=name)
            return {"Tags": r.get("TagList") or []}
        tagged = await per_resource(ctx, self.type_name, names, tags)
        return {n: tags_to_map(v.get("Tags")) for n, v in tagged.items()}

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = resolved(decl)
        name = self.physical_id(decl)
        if top & {"Value", *_PUT_KEYS}:
            params: dict[str, Any] = {"Name": name, "Overwrite": True,
                                      "Value": str(props.get("Value", live.get("Value", "")))}
            for k in _PUT_KEYS:
                if props.get(k) is not None:
                    params[k] = str(props[k])
            params.setdefault("Type", live.get("Type") or "String")
            await ctx.call("ssm", "put_parameter", **params)
        if "Tags" in top:
            to_set, to_remove = tag_delta(decl, live.get("Tags"), ctx)
            if to_set:
                await ctx.call("ssm", "add_tags_to_resource", ResourceType="Parameter", ResourceId=name,
                               Tags=kv_tags(to_set))
            if to_remove:
                await ctx.call("ssm", "remove_tags_from_resource", ResourceType="Parameter", ResourceId=name,
                               TagKeys=to_remove)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = resolved(decl)
        params: dict[str, Any] = {"Name": self.physical_id(decl), "Value": str(props.get("Value", ""))}
        for k in _PUT_KEYS:
            if props.get(k) is not None:
                params[k] = str(props[k])
        params.setdefault("Type", "String")
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(props.get("Tags")))
        if tags:
            params["Tags"] = kv_tags(tags)
        await ctx.call("ssm", "put_parameter", **params)
        ctx.memo.pop("ssm:parameters", None)
