"""AWS::AutoScaling::AutoScalingGroup as a table: capacities and the other declared scalars, subnets/zones as sets,
tags.

Reads: DescribeAutoScalingGroups by name, 100 a call (all of them for the unmanaged view); tags come with it.
Revert: one UpdateAutoScalingGroup carrying only the drifted settings, plus one tag call each way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar
from ..base import Live
from ..registry import register
from ..spec import Create, ListCall, Lookup, Prop, SpecAdapter, Tags, TypeSpec, Write

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
_LISTS = ("AvailabilityZones", "TargetGroupARNs", "LoadBalancerNames", "TerminationPolicies")
_UPDATABLE = frozenset({*_SCALARS, "LaunchTemplate", "VPCZoneIdentifier", "AvailabilityZones", "TerminationPolicies"})


def _api_value(api_key: str, v: Any) -> Any:
    if api_key in _INT:
        return int(v)
    if api_key in _BOOL:
        return canonical_scalar(v) == "true"
    return v


def _launch_template(lt: Any) -> Any:
    return {k: lt[k] for k in ("LaunchTemplateId", "LaunchTemplateName", "Version") if lt.get(k) is not None} \
        if isinstance(lt, Mapping) else lt


def _list(key: str) -> Callable[[Mapping[str, Any]], list[Any]]:
    return lambda g: list(g.get(key) or [])


def _subnets(v: Any) -> Any:
    return [s for s in v.split(",") if s] if isinstance(v, str) else v


def _params(props: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    """Create/Update parameters for the ``keys`` among the declared ``props``."""
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


def _update(live: Live, p: Mapping[str, Any]) -> dict[str, Any] | None:
    params = _params(p, set(live["_changed"]))  # only what drifted: an unchanged capacity is never re-sent
    return {"AutoScalingGroupName": live["AutoScalingGroupName"], **params} if params else None


def _tag(name: str, k: str, v: str) -> dict[str, Any]:
    return {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": True}


def _create(name: str, p: Mapping[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    params = _params(p, set(p))
    params.setdefault("MinSize", 0)
    params.setdefault("MaxSize", max(1, params["MinSize"]))
    return {"AutoScalingGroupName": name, **params,
            **({"Tags": [_tag(name, k, v) for k, v in tags.items()]} if tags else {})}


@register
class AutoScalingGroup(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::AutoScaling::AutoScalingGroup", service="autoscaling", name_property="AutoScalingGroupName",
        list=ListCall("describe_auto_scaling_groups", "AutoScalingGroups", params={"MaxRecords": 100},
                      lookup=Lookup("describe_auto_scaling_groups",
                                    lambda names: {"AutoScalingGroupNames": names, "MaxRecords": 100},
                                    "AutoScalingGroups", size=100, cursor=("NextToken", "NextToken"))),
        item_id=lambda g: str(g["AutoScalingGroupName"]),
        ids=lambda g: {"AutoScalingGroupName": g["AutoScalingGroupName"]},
        props={**{cfn: Prop(api) for cfn, api in _SCALARS.items()},
               "LaunchTemplate": Prop(lambda g: dict(g["LaunchTemplate"]) if g.get("LaunchTemplate") else None,
                                      normalize=_launch_template),
               **{k: Prop(_list(k)) for k in _LISTS},
               "VPCZoneIdentifier": Prop(lambda g: g.get("VPCZoneIdentifier") or "", normalize=_subnets)},
        tags=Tags(set_op="create_or_update_tags",
                  set_params=lambda live, t: {"Tags": [_tag(live["AutoScalingGroupName"], k, v) for k, v in t.items()]},
                  unset_op="delete_tags",
                  unset_params=lambda live, keys: {"Tags": [
                      {"ResourceId": live["AutoScalingGroupName"], "ResourceType": "auto-scaling-group", "Key": k}
                      for k in keys]}),
        compare=CompareSpec(sets={f"/{k}": str for k in (*_LISTS, "VPCZoneIdentifier")}, closed=("/Tags",)),
        writes=(Write("update_auto_scaling_group", _UPDATABLE, _update),),
        create=Create("create_auto_scaling_group", _create),
        extra_write_actions=("iam:PassRole", "ec2:RunInstances", "ec2:CreateTags"),  # what creating a group needs
    )
