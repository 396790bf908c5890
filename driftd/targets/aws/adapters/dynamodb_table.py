"""AWS::DynamoDB::Table as a table: BillingMode, ProvisionedThroughput, PointInTimeRecovery, streams, keys, Tags.

DynamoDB has no batch describe: DescribeTable per declared table (ListTables, 100 a page, only for the unmanaged
view, which needs names alone unless a tag filter asks for tags), plus DescribeContinuousBackups /
ListTagsOfResource only when those properties are declared. Revert: one UpdateTable carrying only the drifted
settings (DynamoDB refuses an update that re-sends an unchanged stream or throughput), one
UpdateContinuousBackups, one tag call each way; a changed key schema needs a new table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar
from ..base import Live
from ..registry import register
from ..spec import Create, ListCall, Lookup, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv


def _attr_name(a: Any) -> str:
    return str(a.get("AttributeName")) if isinstance(a, Mapping) else str(a)


def _mode(t: Mapping[str, Any]) -> str:
    return str((t.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED")


def _live_throughput(t: Mapping[str, Any]) -> dict[str, Any] | None:
    pt = t.get("ProvisionedThroughput") or {}
    return {"ReadCapacityUnits": pt.get("ReadCapacityUnits"), "WriteCapacityUnits": pt.get("WriteCapacityUnits")} \
        if _mode(t) == "PROVISIONED" else None


def _live_stream(t: Mapping[str, Any]) -> dict[str, Any] | None:
    ss = t.get("StreamSpecification") or {}
    return {"StreamViewType": ss.get("StreamViewType")} if ss.get("StreamEnabled") else None


def _live_pitr(a: Mapping[str, Any]) -> dict[str, bool]:
    status = ((a.get("ContinuousBackupsDescription") or {}).get("PointInTimeRecoveryDescription") or {}).get(
        "PointInTimeRecoveryStatus")
    return {"PointInTimeRecoveryEnabled": status == "ENABLED"}


def _throughput(props: Mapping[str, Any]) -> dict[str, int]:
    pt = props.get("ProvisionedThroughput") or {}
    return {"ReadCapacityUnits": int(pt.get("ReadCapacityUnits", 1)),
            "WriteCapacityUnits": int(pt.get("WriteCapacityUnits", 1))}


def _stream(props: Mapping[str, Any]) -> dict[str, Any]:
    return {"StreamEnabled": True, "StreamViewType": props["StreamSpecification"]["StreamViewType"]}


def _update(live: Live, p: Mapping[str, Any]) -> dict[str, Any] | None:
    top = live["_changed"]
    update: dict[str, Any] = {}
    if "BillingMode" in top and p.get("BillingMode"):
        update["BillingMode"] = p["BillingMode"]
    if top & {"BillingMode", "ProvisionedThroughput"} and p.get("ProvisionedThroughput") and \
            p.get("BillingMode", "PROVISIONED") == "PROVISIONED":  # switching to provisioned needs the throughput
        update["ProvisionedThroughput"] = _throughput(p)
    if "StreamSpecification" in top and isinstance(p.get("StreamSpecification"), Mapping):
        update["StreamSpecification"] = _stream(p)
    return {"TableName": live["TableName"], **update} if update else None


def _pitr(live: Live, p: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = p.get("PointInTimeRecoverySpecification")
    if not isinstance(spec, Mapping):
        return None
    enabled = canonical_scalar(spec.get("PointInTimeRecoveryEnabled", False)) == "true"
    return {"TableName": live["TableName"], "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": enabled}}


def _create(name: str, p: Mapping[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    mode = str(p.get("BillingMode") or "PROVISIONED")
    return {"TableName": name, "KeySchema": p["KeySchema"], "AttributeDefinitions": p["AttributeDefinitions"],
            "BillingMode": mode, **({"ProvisionedThroughput": _throughput(p)} if mode == "PROVISIONED" else {}),
            **({"StreamSpecification": _stream(p)} if isinstance(p.get("StreamSpecification"), Mapping) else {}),
            **({"Tags": kv(tags)} if tags else {})}


_PITR = Write("update_continuous_backups", frozenset({"PointInTimeRecoverySpecification"}), _pitr)


@register
class Table(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::DynamoDB::Table", service="dynamodb", name_property="TableName",
        list=ListCall("list_tables", "TableNames", ("ExclusiveStartTableName", "LastEvaluatedTableName"),
                      {"Limit": 100}, ids_only=True,
                      lookup=Lookup("describe_table", lambda names: {"TableName": names[0]}, "Table",
                                    missing=("ResourceNotFoundException",))),
        item_id=lambda t: str(t["TableName"]),
        ids=lambda t: {"TableName": t["TableName"], "TableArn": t["TableArn"]},
        reads=(Read("describe_continuous_backups", lambda t: {"TableName": t["TableName"]}),),
        props={"BillingMode": Prop(_mode), "KeySchema": Prop(lambda t: t.get("KeySchema") or []),
               "AttributeDefinitions": Prop(lambda t: t.get("AttributeDefinitions") or []),
               "TableClass": Prop(lambda t: (t.get("TableClassSummary") or {}).get("TableClass") or "STANDARD"),
               "ProvisionedThroughput": Prop(_live_throughput), "StreamSpecification": Prop(_live_stream),
               "PointInTimeRecoverySpecification": Prop(_live_pitr, source=0)},
        tags=Tags(read=Read("list_tags_of_resource", lambda t: {"ResourceArn": t["TableArn"]},
                            pages=("Tags", "NextToken", "NextToken")),
                  set_op="tag_resource", set_params=lambda live, t: {"ResourceArn": live["TableArn"], "Tags": kv(t)},
                  unset_op="untag_resource",
                  unset_params=lambda live, k: {"ResourceArn": live["TableArn"], "TagKeys": k}),
        compare=CompareSpec(sets={"/AttributeDefinitions": _attr_name}, closed=("/Tags",)),
        writes=(Write("update_table", frozenset({"BillingMode", "ProvisionedThroughput", "StreamSpecification"}),
                      _update), _PITR),
        immutable=frozenset({"KeySchema"}),
        create=Create("create_table", _create, then=(_PITR,),
                      id_from=lambda name, a: {"TableName": name, "TableArn": a["TableDescription"]["TableArn"]}),
    )
