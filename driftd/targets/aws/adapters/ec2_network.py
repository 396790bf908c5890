"""Tables: AWS::EC2::VPC, Subnet, RouteTable, EIP (no names: found by CloudFormation's or driftd's logical-id
tags), AWS::EC2::LaunchTemplate, AWS::ElasticLoadBalancingV2::TargetGroup and Listener."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar
from ....model import AwsDeclaration, Change
from ..base import Ctx, Live, changed_top, chunks, resolved
from ..registry import register
from ..spec import Create, ListCall, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv


def _bool(v: Any) -> bool:
    return bool(canonical_scalar(v) == "true")


def _ec2_tags(resource_type: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {"TagSpecifications": [{"ResourceType": resource_type, "Tags": kv(tags)}]} if tags else {}


def _ec2_tagging(id_key: str) -> Tags:
    return Tags(set_op="create_tags", set_params=lambda live, t: {"Resources": [live[id_key]], "Tags": kv(t)},
                unset_op="delete_tags",
                unset_params=lambda live, k: {"Resources": [live[id_key]], "Tags": [{"Key": x} for x in k]})


def _vpc_attr(name: str) -> Write:
    prop = name[0].upper() + name[1:]
    return Write("modify_vpc_attribute", frozenset({prop}),
                 lambda live, p: {"VpcId": live["VpcId"], prop: {"Value": _bool(p[prop])}})


@register
class Vpc(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::EC2::VPC", service="ec2", identity="tags",
        list=ListCall("describe_vpcs", "Vpcs", params={"MaxResults": 1000}),
        item_id=lambda i: str(i["VpcId"]), ids=lambda i: {"VpcId": i["VpcId"]},
        skip_item=lambda i: bool(i.get("IsDefault")),
        reads=(Read("describe_vpc_attribute", lambda i: {"VpcId": i["VpcId"], "Attribute": "enableDnsSupport"}),
               Read("describe_vpc_attribute", lambda i: {"VpcId": i["VpcId"], "Attribute": "enableDnsHostnames"})),
        props={"CidrBlock": Prop("CidrBlock"), "InstanceTenancy": Prop("InstanceTenancy"),
               "EnableDnsSupport": Prop(lambda a: (a.get("EnableDnsSupport") or {}).get("Value"), source=0),
               "EnableDnsHostnames": Prop(lambda a: (a.get("EnableDnsHostnames") or {}).get("Value"), source=1)},
        tags=_ec2_tagging("VpcId"),
        writes=(_vpc_attr("enableDnsSupport"), _vpc_attr("enableDnsHostnames")),
        immutable=frozenset({"CidrBlock", "InstanceTenancy"}),
        create=Create("create_vpc", lambda name, p, tags: {
            "CidrBlock": p["CidrBlock"], **({"InstanceTenancy": p["InstanceTenancy"]} if p.get("InstanceTenancy")
                                            else {}), **_ec2_tags("vpc", tags)},
            then=(_vpc_attr("enableDnsSupport"), _vpc_attr("enableDnsHostnames")),
            id_from=lambda name, a: {"VpcId": a["Vpc"]["VpcId"]}),
    )


# Reverts the attribute, and sets it right after create_subnet (which cannot take it).
_SUBNET_PUBLIC_IP = Write("modify_subnet_attribute", frozenset({"MapPublicIpOnLaunch"}),
                          lambda live, p: {"SubnetId": live["SubnetId"],
                                           "MapPublicIpOnLaunch": {"Value": _bool(p["MapPublicIpOnLaunch"])}})


@register
class Subnet(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::EC2::Subnet", service="ec2", identity="tags",
        list=ListCall("describe_subnets", "Subnets", params={"MaxResults": 1000}),
        item_id=lambda i: str(i["SubnetId"]), ids=lambda i: {"SubnetId": i["SubnetId"]},
        skip_item=lambda i: bool(i.get("DefaultForAz")),
        props={k: Prop(k) for k in ("VpcId", "CidrBlock", "AvailabilityZone", "MapPublicIpOnLaunch")},
        tags=_ec2_tagging("SubnetId"),
        writes=(_SUBNET_PUBLIC_IP,),
        immutable=frozenset({"VpcId", "CidrBlock", "AvailabilityZone"}),
        create=Create("create_subnet", lambda name, p, tags: {
            "VpcId": p["VpcId"], "CidrBlock": p["CidrBlock"],
            **({"AvailabilityZone": p["AvailabilityZone"]} if p.get("AvailabilityZone") else {}),
            **_ec2_tags("subnet", tags)},
            then=(_SUBNET_PUBLIC_IP,),
            id_from=lambda name, a: {"SubnetId": a["Subnet"]["SubnetId"]}),
    )


@register
class RouteTable(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::EC2::RouteTable", service="ec2", identity="tags",
        list=ListCall("describe_route_tables", "RouteTables", params={"MaxResults": 100}),
        item_id=lambda i: str(i["RouteTableId"]), ids=lambda i: {"RouteTableId": i["RouteTableId"]},
        skip_item=lambda i: any(a.get("Main") for a in i.get("Associations") or []),
        props={"VpcId": Prop("VpcId")},
        tags=_ec2_tagging("RouteTableId"),
        immutable=frozenset({"VpcId"}),
        create=Create("create_route_table", lambda name, p, tags: {"VpcId": p["VpcId"],
                                                                   **_ec2_tags("route-table", tags)}),
    )


@register
class Eip(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::EC2::EIP", service="ec2", identity="tags",
        list=ListCall("describe_addresses", "Addresses", cursor=None),
        item_id=lambda i: str(i.get("AllocationId") or i.get("PublicIp")),
        ids=lambda i: {"AllocationId": i.get("AllocationId")},
        props={"Domain": Prop("Domain"), "InstanceId": Prop("InstanceId")},
        tags=_ec2_tagging("AllocationId"),
        writes=(Write("associate_address", frozenset({"InstanceId"}),
                      lambda live, p: {"AllocationId": live["AllocationId"], "InstanceId": p["InstanceId"]}),),
        immutable=frozenset({"Domain"}),
        create=Create("allocate_address", lambda name, p, tags: {"Domain": "vpc", **_ec2_tags("elastic-ip", tags)}),
    )


_LT_SETS = {f"/LaunchTemplateData/{k}": str for k in ("SecurityGroupIds", "SecurityGroups")}


@register
class LaunchTemplate(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::EC2::LaunchTemplate", service="ec2", name_property="LaunchTemplateName",
        list=ListCall("describe_launch_templates", "LaunchTemplates", params={"MaxResults": 200}),
        item_id=lambda i: str(i["LaunchTemplateName"]),
        ids=lambda i: {"LaunchTemplateId": i["LaunchTemplateId"]},
        reads=(Read("describe_launch_template_versions",
                    lambda i: {"LaunchTemplateId": i["LaunchTemplateId"], "Versions": ["$Default"]}),),
        props={"LaunchTemplateData": Prop(lambda a: ((a.get("LaunchTemplateVersions") or [{}])[0]
                                                     .get("LaunchTemplateData")), source=0)},
        compare=CompareSpec(sets=_LT_SETS),
        tags=_ec2_tagging("LaunchTemplateId"),
        writes=(Write("create_launch_template_version", frozenset({"LaunchTemplateData"}),
                      lambda live, p: {"LaunchTemplateId": live["LaunchTemplateId"],
                                       "LaunchTemplateData": dict(p["LaunchTemplateData"])}),),
        extra_write_actions=("ec2:ModifyLaunchTemplate", "iam:PassRole"),
        create=Create("create_launch_template", lambda name, p, tags: {
            "LaunchTemplateName": name, "LaunchTemplateData": dict(p.get("LaunchTemplateData") or {}),
            **_ec2_tags("launch-template", tags)}),
    )

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        """A new version with the declared data, made the default (a version itself never changes)."""
        if "LaunchTemplateData" in changed_top(changes):
            props = resolved(decl)
            v = await self.write(ctx, "create_launch_template_version", LaunchTemplateId=live["LaunchTemplateId"],
                                 LaunchTemplateData=dict(props.get("LaunchTemplateData") or {}))
            await self.write(ctx, "modify_launch_template", LaunchTemplateId=live["LaunchTemplateId"],
                             DefaultVersion=str(v["LaunchTemplateVersion"]["VersionNumber"]))
        rest = [c for c in changes if not c.path.startswith("/LaunchTemplateData")]
        if rest:
            await super().revert(ctx, decl, live, rest)


_TG = ("Protocol", "Port", "VpcId", "TargetType", "ProtocolVersion", "HealthCheckEnabled", "HealthCheckProtocol",
       "HealthCheckPort", "HealthCheckPath", "HealthCheckIntervalSeconds", "HealthCheckTimeoutSeconds",
       "HealthyThresholdCount", "UnhealthyThresholdCount", "Matcher", "IpAddressType")
_TG_MODIFY = ("HealthCheckEnabled", "HealthCheckProtocol", "HealthCheckPort", "HealthCheckPath",
              "HealthCheckIntervalSeconds", "HealthCheckTimeoutSeconds", "HealthyThresholdCount",
              "UnhealthyThresholdCount", "Matcher")
_TG_INT = ("Port", "HealthCheckIntervalSeconds", "HealthCheckTimeoutSeconds", "HealthyThresholdCount",
           "UnhealthyThresholdCount")


def _tg_value(k: str, v: Any) -> Any:
    if k in _TG_INT:
        return int(v)
    if k == "HealthCheckEnabled":
        return _bool(v)
    if k == "HealthCheckPort":
        return str(v)
    return v


async def _tg_tags(ctx: Ctx, items: list[Any]) -> dict[int, dict[str, str]]:
    """DescribeTags takes 20 ARNs a call: tags for many target groups in few calls."""
    pos = {str(it["TargetGroupArn"]): n for n, it in enumerate(items)}
    out: dict[int, dict[str, str]] = {}
    for part in chunks(list(pos), 20):
        r = await ctx.call("elbv2", "describe_tags", ResourceArns=list(part))
        for d in r.get("TagDescriptions") or []:
            out[pos[d["ResourceArn"]]] = {t["Key"]: t.get("Value", "") for t in d.get("Tags") or []}
    return out


@register
class TargetGroup(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::ElasticLoadBalancingV2::TargetGroup", service="elbv2", name_property="Name",
        list=ListCall("describe_target_groups", "TargetGroups", ("Marker", "NextMarker"), {"PageSize": 400}),
        item_id=lambda i: str(i["TargetGroupName"]),
        ids=lambda i: {"TargetGroupArn": i["TargetGroupArn"]},
        reads=(Read("describe_target_group_attributes", lambda i: {"TargetGroupArn": i["TargetGroupArn"]}),),
        props={**{k: Prop(k) for k in _TG},
               "TargetGroupAttributes": Prop("Attributes", source=0)},
        compare=CompareSpec(sets={"/TargetGroupAttributes": lambda a: str(a.get("Key"))}, closed=("/Tags",)),
        tags=Tags(read=Read("describe_tags", lambda i: {}), batch_read=_tg_tags,
                  set_op="add_tags", set_params=lambda live, t: {"ResourceArns": [live["TargetGroupArn"]],
                                                                 "Tags": kv(t)},
                  unset_op="remove_tags",
                  unset_params=lambda live, k: {"ResourceArns": [live["TargetGroupArn"]], "TagKeys": k}),
        writes=(Write("modify_target_group", frozenset(_TG_MODIFY), lambda live, p: {
                    "TargetGroupArn": live["TargetGroupArn"],
                    **{k: _tg_value(k, p[k]) for k in _TG_MODIFY if k in p}}),
                Write("modify_target_group_attributes", frozenset({"TargetGroupAttributes"}), lambda live, p: {
                    "TargetGroupArn": live["TargetGroupArn"],
                    "Attributes": [{"Key": a["Key"], "Value": str(canonical_scalar(a["Value"]))}
                                   for a in p["TargetGroupAttributes"]]})),
        immutable=frozenset({"Protocol", "Port", "VpcId", "TargetType", "ProtocolVersion", "IpAddressType"}),
        create=Create("create_target_group", lambda name, p, tags: {
            "Name": name, **{k: _tg_value(k, p[k]) for k in _TG if k in p}, **({"Tags": kv(tags)} if tags else {})}),
    )


_LISTENER = ("Port", "Protocol", "SslPolicy", "Certificates", "DefaultActions", "AlpnPolicy", "LoadBalancerArn")


async def _listener_tags(ctx: Ctx, items: list[Any]) -> dict[int, dict[str, str]]:
    pos = {str(it["ListenerArn"]): n for n, it in enumerate(items)}
    out: dict[int, dict[str, str]] = {}
    for part in chunks(list(pos), 20):
        r = await ctx.call("elbv2", "describe_tags", ResourceArns=list(part))
        for d in r.get("TagDescriptions") or []:
            out[pos[d["ResourceArn"]]] = {t["Key"]: t.get("Value", "") for t in d.get("Tags") or []}
    return out


def _actions(v: Any) -> Any:
    """Default actions as declared or read: the fields that decide where traffic goes, in order."""
    if not isinstance(v, list):
        return v
    keep = ("Type", "TargetGroupArn", "Order", "RedirectConfig", "FixedResponseConfig")
    return [{k: a[k] for k in keep if isinstance(a, Mapping) and a.get(k) is not None} for a in v]


def _listener_params(live: Live, p: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ListenerArn": live["ListenerArn"]}
    for k in ("Port", "Protocol", "SslPolicy", "Certificates", "DefaultActions", "AlpnPolicy"):
        if k in p:
            out[k] = int(p[k]) if k == "Port" else p[k]
    return out


@register
class Listener(SpecAdapter):
    """An ELBv2 listener: no name; found by its logical-id tags (CloudFormation's or driftd's) or an ARN hint.
    Reads every load balancer's listeners (one DescribeListeners per load balancer) and their tags (20 a call)."""

    table = TypeSpec(
        type_name="AWS::ElasticLoadBalancingV2::Listener", service="elbv2", identity="tags",
        list=ListCall("describe_load_balancers", "LoadBalancers", ("Marker", "NextMarker"), {"PageSize": 400}),
        item_id=lambda i: str(i["ListenerArn"]), ids=lambda i: {"ListenerArn": i["ListenerArn"]},
        reads=(Read("describe_listeners", lambda i: {}),),
        props={k: Prop(k, normalize=_actions if k == "DefaultActions" else None) for k in _LISTENER},
        compare=CompareSpec(sets={"/Certificates": lambda c: str(c.get("CertificateArn"))}, closed=("/Tags",)),
        tags=Tags(read=Read("describe_tags", lambda i: {}), batch_read=_listener_tags,
                  set_op="add_tags", set_params=lambda live, t: {"ResourceArns": [live["ListenerArn"]],
                                                                 "Tags": kv(t)},
                  unset_op="remove_tags",
                  unset_params=lambda live, k: {"ResourceArns": [live["ListenerArn"]], "TagKeys": k}),
        writes=(Write("modify_listener", frozenset(_LISTENER) - {"LoadBalancerArn"}, _listener_params),),
        immutable=frozenset({"LoadBalancerArn"}),
        create=Create("create_listener", lambda name, p, tags: {
            "LoadBalancerArn": p["LoadBalancerArn"],
            **{k: (int(p[k]) if k == "Port" else p[k]) for k in _LISTENER if k in p and k != "LoadBalancerArn"},
            **({"Tags": kv(tags)} if tags else {})}),
    )

    async def items(self, ctx: Ctx) -> list[dict[str, Any]]:
        """Listeners of every load balancer in the region, once per pass."""
        async def fetch() -> list[dict[str, Any]]:
            lbs = await super(Listener, self).items(ctx)
            out: list[dict[str, Any]] = []
            for lb in lbs:
                out += await ctx.paginate("elbv2", "describe_listeners", "Listeners", cursor=("Marker", "NextMarker"),
                                          LoadBalancerArn=lb["LoadBalancerArn"])
            return out
        result: list[dict[str, Any]] = await ctx.once("elbv2:listeners", fetch)
        return result
