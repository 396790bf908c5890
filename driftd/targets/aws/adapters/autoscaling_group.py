"""AWS::AutoScaling::AutoScalingGroup: capacities and the other declared scalars, subnets/zones as sets, tags.

Reads: DescribeAutoScalingGroups by name, 100 a call (or all of them for the
unmanaged view). Revert: one UpdateAutoScalingGroup carrying every drifted
scalar, plus one tag call each way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar, tags_to_map
from ....model import AwsDeclaration, Change
from ..base import Adapter, Ctx, Live, changed_top, chunks, resolved, tag_delta
from ..registry import register

# CloudFormation property -> DescribeAutoScalingGroups / UpdateAutoScalingGroup field
_SCALARS = {
    "MinSize": "MinSize", "MaxSize": "MaxSize", "DesiredCapacity": "DesiredCapacity", "Cooldown": "DefaultCooldown",
    "HealthCheckType": "HealthCheckType", "HealthCheckGracePeriod": "HealthCheckGracePeriod",
    "LaunchConfigurationName": "LaunchConfigurationName", "MaxInstanceLifetime": "MaxInstanceLifetime",
    "CapacityRebalance": "CapacityRebalance", "NewInstancesProtectedFromScaleIn": "NewInstancesProtectedFromScaleIn",
    "ServiceLinkedRoleARN": "ServiceLinkedRoleARN", "PlacementGroup": "PlacementGroup",
    "DefaultInstanceWarmup": "DefaultInstanceWarmup", "Context": "Context",
    "DesiredCapacityType": "DesiredCapacityType",
}
_INT = {"MinSize", "MaxSize", "DesiredCapacity", "DefaultCooldown", "HealthCheckGracePeriod", "MaxInstanceLifetime",
        "DefaultInstanceWarmup"}
_BOOL = {"CapacityRebalance", "NewInstancesProtectedFromScaleIn"}


def _api_value(api_key: str, v: Any) -> Any:
    if api_key in _INT:
        return int(v)
    if api_key in _BOOL:
        return canonical_scalar(v) == "true"
    return v


def _launch_template(lt: Mapping[str, Any]) -> dict[str, Any]:
    return {k: lt[k] for k in ("LaunchTemplateId", "LaunchTemplateName", "Version") if lt.get(k) is not None}


@register
class AutoScalingGroup(Adapter):
    type_name = "AWS::AutoScaling::AutoScalingGroup"
    service = "autoscaling"
    name_property = "AutoScalingGroupName"
    properties = frozenset({"AutoScalingGroupName", *_SCALARS, "LaunchTemplate", "AvailabilityZones", "TargetGroupARNs",
                            "LoadBalancerNames", "TerminationPolicies", "VPCZoneIdentifier", "Tags"})
    read_permissions = ("autoscaling:DescribeAutoScalingGroups",)
    revert_permissions = ("autoscaling:CreateAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup",
                          "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags", "iam:PassRole",
                          "ec2:RunInstances", "ec2:CreateTags")
    spec = CompareSpec(sets={"/AvailabilityZones": str, "/VPCZoneIdentifier": str, "/TargetGroupARNs": str,
                             "/LoadBalancerNames": str, "/TerminationPolicies": str},
                       closed=("/Tags",))

    def normalize(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = super().normalize(props)
        if isinstance(out.get("VPCZoneIdentifier"), str):
            out["VPCZoneIdentifier"] = [s for s in out["VPCZoneIdentifier"].split(",") if s]
        if isinstance(out.get("LaunchTemplate"), Mapping):
            out["LaunchTemplate"] = _launch_template(out["LaunchTemplate"])
        return out

    @staticmethod
    def _live(g: Mapping[str, Any]) -> Live:
        live: Live = {"AutoScalingGroupName": g["AutoScalingGroupName"]}
        for cfn, api in _SCALARS.items():
            if g.get(api) is not None:
                live[cfn] = g[api]
        if g.get("LaunchTemplate"):
            live["LaunchTemplate"] = dict(g["LaunchTemplate"])
        for k in ("AvailabilityZones", "TargetGroupARNs", "LoadBalancerNames", "TerminationPolicies"):
            live[k] = list(g.get(k) or [])
        live["VPCZoneIdentifier"] = g.get("VPCZoneIdentifier") or ""
        live["Tags"] = [{"Key": t["Key"], "Value": t.get("Value", "")} for t in g.get("Tags") or []]
        return live

    async def _all(self, ctx: Ctx) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            return await ctx.paginate("autoscaling", "describe_auto_scaling_groups", "AutoScalingGroups",
                                      MaxRecords=100)
        groups: list[dict[str, Any]] = await ctx.once("autoscaling:groups", fetch)
        return groups

    async def read(self, ctx: Ctx, decls: Sequence[AwsDeclaration]) -> dict[str, Live]:
        names = sorted({self.physical_id(d) for d in decls})
        if ctx.unmanaged:
            groups = await self._all(ctx)
        else:
            groups = []
            for part in chunks(names, 100):
                groups += await ctx.paginate("autoscaling", "describe_auto_scaling_groups", "AutoScalingGroups",
                                             AutoScalingGroupNames=list(part), MaxRecords=100)
        wanted = set(names)
        return {g["AutoScalingGroupName"]: self._live(g) for g in groups if g["AutoScalingGroupName"] in wanted}

    async def list_all(self, ctx: Ctx) -> dict[str, Mapping[str, str]]:
        return {g["AutoScalingGroupName"]: {t["Key"]: t.get("Value", "") for t in g.get("Tags") or []}
                for g in await self._all(ctx)}

    def _params(self, props: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for cfn, api in _SCALARS.items():
            if cfn in keys and props.get(cfn) is not None:
                params[api] = _api_value(api, props[cfn])
        if "LaunchTemplate" in keys and isinstance(props.get("LaunchTemplate"), Mapping):
            params["LaunchTemplate"] = _launch_template(props["LaunchTemplate"])
        if "VPCZoneIdentifier" in keys and props.get("VPCZoneIdentifier"):
            v = props["VPCZoneIdentifier"]
            params["VPCZoneIdentifier"] = v if isinstance(v, str) else ",".join(v)
        for k in ("AvailabilityZones", "TerminationPolicies"):
            if k in keys and props.get(k):
                params[k] = list(props[k])
        return params

    def _tag(self, name: str, k: str, v: str) -> dict[str, Any]:
        return {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                "PropagateAtLaunch": True}

    async def revert(self, ctx: Ctx, decl: AwsDeclaration, live: Live, changes: Sequence[Change]) -> None:
        top = changed_top(changes)
        props = resolved(decl)
        name = self.physical_id(decl)
        params = self._params(props, top)
        if params:
            await ctx.call("autoscaling", "update_auto_scaling_group", AutoScalingGroupName=name, **params)
        if "Tags" in top:
            to_set, to_remove = tag_delta(decl, live.get("Tags"), ctx)
            if to_set:
                await ctx.call("autoscaling", "create_or_update_tags",
                               Tags=[self._tag(name, k, v) for k, v in to_set.items()])
            if to_remove:
                await ctx.call("autoscaling", "delete_tags", Tags=[{"ResourceId": name,
                                                                    "ResourceType": "auto-scaling-group", "Key": k}
                                                                   for k in to_remove])

    async def create(self, ctx: Ctx, decl: AwsDeclaration) -> None:
        props = resolved(decl)
        name = self.physical_id(decl)
        params = self._params(props, set(props))
        params.setdefault("MinSize", 0)
        params.setdefault("MaxSize", max(1, params["MinSize"]))
        tags = dict(ctx.tag_filter)
        tags.update(tags_to_map(props.get("Tags")))
        if tags:
            params["Tags"] = [self._tag(name, k, v) for k, v in tags.items()]
        await ctx.call("autoscaling", "create_auto_scaling_group", AutoScalingGroupName=name, **params)
        ctx.memo.pop("autoscaling:groups", None)
