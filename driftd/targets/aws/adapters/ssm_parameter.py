"""AWS::SSM::Parameter as a table: Value, Type, Description, Tags (and the other scalar properties).

A SecureString value is decrypted to compare it and never leaves the process: a changed value is reported as
``(redacted)`` on both sides. Reads: GetParameters (10 names a call) for values and types, with no listing at
all when nothing else is declared (a name it does not answer for does not exist); DescribeParameters by name
(50 a call; the whole region for the unmanaged view) only when a property it alone knows is declared or nothing
but existence is checked; ListTagsForResource per parameter only when tags are declared. Revert: one
PutParameter for every drifted setting, one tag call each way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ....diff.aws_compare import redact
from ....model import AwsDeclaration, Change
from ..base import Ctx, Live
from ..registry import register
from ..spec import BatchRead, Create, ListCall, Lookup, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv

SECURE = "SecureString"
_DESCRIBED = ("Description", "AllowedPattern", "Tier", "DataType")
_PUT_KEYS = ("Type", "Description", "AllowedPattern", "Tier", "DataType")


def _settings(p: Mapping[str, Any]) -> dict[str, Any]:
    return {k: str(p[k]) for k in _PUT_KEYS if p.get(k) is not None}


def _put(live: Live, p: Mapping[str, Any]) -> dict[str, Any]:
    """PutParameter carries the value with every setting: the declared one, else the live one (read for it)."""
    params: dict[str, Any] = {"Name": live["Name"], "Overwrite": True,
                              "Value": str(p.get("Value", live.get("Value", ""))), **_settings(p)}
    params.setdefault("Type", live.get("Type") or "String")
    return params


def _create(name: str, p: Mapping[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    return {"Name": name, "Value": str(p.get("Value", "")), "Type": "String", **_settings(p),
            **({"Tags": kv(tags)} if tags else {})}


@register
class Parameter(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::SSM::Parameter", service="ssm", name_property="Name",
        list=ListCall("describe_parameters", "Parameters", params={"MaxResults": 50},
                      lookup=Lookup("describe_parameters", lambda names: {
                          "MaxResults": 50, "ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": names}]},
                          "Parameters", size=50, cursor=("NextToken", "NextToken"))),
        item_id=lambda p: str(p["Name"]),
        ids=lambda p: {"Name": p["Name"]},
        from_name=lambda name: {"Name": name},
        reads=(BatchRead("get_parameters", lambda items: {"Names": [i["Name"] for i in items], "WithDecryption": True},
                         "Parameters", answer_id=lambda a: str(a["Name"]), size=10),),
        props={"Type": Prop("Type", source=0), "Value": Prop("Value", source=0),
               **{k: Prop(k) for k in _DESCRIBED}},
        tags=Tags(read=Read("list_tags_for_resource", lambda p: {"ResourceType": "Parameter", "ResourceId": p["Name"]}),
                  result_key="TagList",
                  set_op="add_tags_to_resource", set_params=lambda live, t: {
                      "ResourceType": "Parameter", "ResourceId": live["Name"], "Tags": kv(t)},
                  unset_op="remove_tags_from_resource", unset_params=lambda live, k: {
                      "ResourceType": "Parameter", "ResourceId": live["Name"], "TagKeys": k}),
        writes=(Write("put_parameter", frozenset({"Value", *_PUT_KEYS}), _put),),
        create=Create("put_parameter", _create),
        extra_read_actions=("kms:Decrypt",),  # SecureString values are read decrypted
        extra_write_actions=("kms:Encrypt",),
    )

    def declared(self, decls: Iterable[AwsDeclaration], ctx: Ctx | None = None) -> set[str]:
        # A setting is reverted by PutParameter, which needs the value too: read it when only settings are declared
        # (a revert must not overwrite an undeclared value with an empty one).
        out = super().declared(decls, ctx)
        return out | {"Value"} if out & set(_DESCRIBED) else out

    def compare(self, decl: AwsDeclaration, live: Mapping[str, Any], tag_filter: Mapping[str, str]) -> list[Change]:
        changes = super().compare(decl, live, tag_filter)
        secure = SECURE in (decl.properties.get("Type"), live.get("Type"))
        return [redact(c) if secure and c.path == "/Value" else c for c in changes]
