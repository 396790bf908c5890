"""AWS::DynamoDB::Table: BillingMode, ProvisionedThroughput, PointInTimeRecovery, streams, keys, Tags.

DynamoDB has no batch describe: DescribeTable per declared table, plus
DescribeContinuousBackups / ListTagsOfResource only when those properties are
declared. ListTables (100 a page) for the unmanaged view.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar, tags_to_map
from ....errors import TargetError
from ....model import AwsDeclaration, Change
from ..base import Adapter, ApiError, Ctx, Live, changed_top, kv_tags, per_resource, resolved, tag_delta
from ..registry import register


def _attr_name(a: Any) -> str:
    return str(a.get("AttributeName")) if isinstance(a, Mapping) else str(a)


@register
class Table(Adapter):
    type_name = "AWS::DynamoDB::Table"
    service = "dynamodb"
    name_property = "TableName"
    properties = frozenset({"TableName", "BillingMode", "KeySchema", "AttributeDefinitions",
                            "ProvisionedThroughput", "StreamSpecification", "PointInTimeRecoverySpecification",
                            "Tags", "TableClass"})
    read_permissions = ("dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups",
                        "dynamodb:ListTagsOfResource", "dynamodb:ListTables")
    revert_permissions = ("dynamodb:CreateTable", "dynamodb:UpdateTable", "dynamodb:UpdateContinuousBackups",
                          "dynamodb:TagResource", "dynamodb:UntagResource")
    spec = CompareSpec(sets={"/AttributeDefinitions": _attr_name}, closed=("/Tags",))

    async def _read_one(self, ctx: Ctx, name: str, props: set[str]) -> Live | None:
        try:
            t = (await ctx.call("dynamodb", "describe_table", TableName=name))["Table"]
        except ApiError as e:
            if e.code == "ResourceNotFoundException":
                return None
            raise
        live: Live = {"TableName": name, "TableArn": t.get("TableArn"),
                      "BillingMode": (t.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED",
                      "KeySchema": t.get("KeySchema") or [],
                      "AttributeDefinitions": t.get("AttributeDefinitions") or [],
                      "TableClass": (t.get("TableClassSummary") or {}).get("TableClass") or "STANDARD"}
        pt = t.get("ProvisionedThroughput") or {}
        if live["BillingMode"] == "PROVISIONED":
            live["ProvisionedThroughput"] = {"ReadCapacityUnits": pt.get("ReadCapacityUnits"),
                                             "WriteCapacityUnits": pt.get("WriteCapacityUnits")}
        ss = t.get("StreamSpecification") or {}
        if ss.get("StreamEnabled"):
            live["StreamSpecification"] = {"StreamViewType": ss.get("StreamViewType")}
        if "PointInTimeRecoverySpecification" in props:
            cb = (await ctx.call("dynamodb", "describe_continuous_backups", TableName=name))[
                "ContinuousBackupsDescription"]
            status = (cb.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus")
            live["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": status == "ENABLED"}
        if "Tags" in props:
            live["Tags"] = await ctx.paginate("dynamodb", "list_tags_of_resource", "Tags",
                                              ResourceArn=t["TableArn"])
        return live

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        props = self.declared(decls)
        return await per_resource(ctx, self.type_name, [self.physical_id(d) for d in decls],
                                  lambda n: self._read_one(ctx, n, props))

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        names = await ctx.paginate("dynamodb", "list_tables", "TableNames",
                                   cursor=("ExclusiveStartTableName", "LastEvaluatedTableName"),
                                   Limit=100)
        if not ctx.tag_filter:
            return {n: {} for n in names}
        tagged = await per_resource(ctx, self.type_name, names, lambda n: self._read_one(ctx, n, {"Tags"}))
        return {n: tags_to_map(v.get("Tags")) for n, v in tagged.items()}

    @staticmethod
    def _throughput(props: Mapping[str, Any]) -> dict[str, int]:
        pt = props.get("ProvisionedThroughput") or {}
        return {"ReadCapacityUnits": int(pt.get("ReadCapacityUnits", 1)),
                "WriteCapacityUnits": int(pt.get("WriteCapacityUnits", 1))}

    async def _pitr(self, ctx: Ctx, name: str, props: Mapping[str, Any]) -> None:
        spec = props.get("PointInTimeRecoverySpecification") or {}
        enabled = canonical_scalar(spec.get("PointInTimeRecoveryEnabled", False)) == "true"
        await ctx.call("dynamodb", "update_continuous_backups", TableName=name,
                       PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled})

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = resolved(decl)
        name = self.physical_id(decl)
        if top & {"KeySchema", "TableName"}:
            raise TargetError("KeySchema cannot change without replacing the table", subject=name)
        update: dict[str, Any] = {}
        if "BillingMode" in top and props.get("BillingMode"):
            update["BillingMode"] = props["BillingMode"]
        if (top & {"BillingMode", "ProvisionedThroughput"}) and props.get("ProvisionedThroughput") and \
                props.get("BillingMode", "PROVISIONED") == "PROVISIONED":
            update["ProvisionedThroughput"] = self._throughput(props)
        if "StreamSpecification" in top and isinstance(props.get("StreamSpecification"), Mapping):
            update["StreamSpecification"] = {"StreamEnabled": True,
                                             "StreamViewType": props["StreamSpecification"]["StreamViewType"]}
        if update:
            await ctx.call("dynamodb", "update_table", TableName=name, **update)
        if "PointInTimeRecoverySpecification" in top:
            await self._pitr(ctx, name, props)
        if "Tags" in top:
            to_set, to_remove = tag_delta(decl, live.get("Tags"), ctx)
            if to_set:
                await ctx.call("dynamodb", "tag_resource", ResourceArn=live["TableArn"], Tags=kv_tags(to_set))
            if to_remove:
                await ctx.call("dynamodb", "untag_resource", ResourceArn=live["TableArn"], TagKeys=to_remove)

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = resolved(decl)
        name = self.physical_id(decl)
        mode = str(props.get("BillingMode") or "PROVISIONED")
        params: dict[str, Any] = {"TableName": name, "KeySchema": props["KeySchema"],
                                  "AttributeDefinitions": props["AttributeDefinitions"], "BillingMode": mode}
        if mode == "PROVISIONED":
            params["ProvisionedThroughput"] = self._throughput(props)
        if isinstance(props.get("StreamSpecification"), Mapping):
            params["StreamSpecification"] = {"StreamEnabled": True,
                                             "StreamViewType": props["StreamSpecification"]["StreamViewType"]}
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(props.get("Tags")))
        if tags:
            params["Tags"] = kv_tags(tags)
        await ctx.call("dynamodb", "create_table", **params)
        if isinstance(props.get("PointInTimeRecoverySpecification"), Mapping):
            await self._pitr(ctx, name, props)
