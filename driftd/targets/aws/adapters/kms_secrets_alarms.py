"""Tables: AWS::KMS::Key, AWS::KMS::Alias, AWS::SecretsManager::Secret, AWS::CloudWatch::Alarm."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ....diff.aws_compare import CompareSpec, canonical_scalar
from ....diff.aws_policy import normalize_policy, parse_policy, statement_id
from ..base import Live
from ..registry import register
from ..spec import Create, ListCall, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv


def _bool(v: Any) -> bool:
    return bool(canonical_scalar(v) == "true")


def _policy(v: Any) -> Any:
    return normalize_policy(parse_policy(v) if isinstance(v, str) else v)


def _key_id(v: Any) -> Any:
    """An alias's target as an ARN or a bare id: compare the id."""
    return str(v).rsplit("/", 1)[-1] if isinstance(v, str) and v.startswith("arn:") else v


@register
class Key(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::KMS::Key", service="kms", identity="tags",
        list=ListCall("list_keys", "Keys", ("Marker", "NextMarker"), {"Limit": 1000}),
        item_id=lambda i: str(i["KeyId"]),
        ids=lambda i: {"KeyId": i["KeyId"]},
        reads=(Read("describe_key", lambda i: {"KeyId": i["KeyId"]}),
               Read("get_key_rotation_status", lambda i: {"KeyId": i["KeyId"]}),
               Read("get_key_policy", lambda i: {"KeyId": i["KeyId"], "PolicyName": "default"})),
        props={"Description": Prop(lambda a: (a.get("KeyMetadata") or {}).get("Description"), source=0),
               "Enabled": Prop(lambda a: (a.get("KeyMetadata") or {}).get("Enabled"), source=0),
               "KeyUsage": Prop(lambda a: (a.get("KeyMetadata") or {}).get("KeyUsage"), source=0),
               "KeySpec": Prop(lambda a: (a.get("KeyMetadata") or {}).get("KeySpec"), source=0),
               "MultiRegion": Prop(lambda a: (a.get("KeyMetadata") or {}).get("MultiRegion"), source=0),
               "EnableKeyRotation": Prop("KeyRotationEnabled", source=1),
               "KeyPolicy": Prop(lambda a: parse_policy(a.get("Policy")), source=2, normalize=_policy)},
        compare=CompareSpec(sets={"/KeyPolicy/Statement": statement_id}, closed=("/Tags",)),
        # Listing keys lists AWS-managed ones too (aws/s3 ...): tags read per key find CloudFormation's.
        tags=Tags(read=Read("list_resource_tags", lambda i: {"KeyId": i["KeyId"]}), shape="kms",
                  set_op="tag_resource",
                  set_params=lambda live, t: {"KeyId": live["KeyId"], "Tags": kv(t, "TagKey", "TagValue")},
                  unset_op="untag_resource", unset_params=lambda live, k: {"KeyId": live["KeyId"], "TagKeys": k}),
        writes=(Write("update_key_description", frozenset({"Description"}),
                      lambda live, p: {"KeyId": live["KeyId"], "Description": str(p["Description"])}),
                Write("enable_key_rotation", frozenset({"EnableKeyRotation"}),
                      lambda live, p: {"KeyId": live["KeyId"]} if _bool(p["EnableKeyRotation"]) else None),
                Write("disable_key_rotation", frozenset({"EnableKeyRotation"}),
                      lambda live, p: None if _bool(p["EnableKeyRotation"]) else {"KeyId": live["KeyId"]}),
                Write("enable_key", frozenset({"Enabled"}),
                      lambda live, p: {"KeyId": live["KeyId"]} if _bool(p["Enabled"]) else None),
                Write("disable_key", frozenset({"Enabled"}),
                      lambda live, p: None if _bool(p["Enabled"]) else {"KeyId": live["KeyId"]}),
                Write("put_key_policy", frozenset({"KeyPolicy"}),
                      lambda live, p: {"KeyId": live["KeyId"], "PolicyName": "default",
                                       "Policy": json.dumps(p["KeyPolicy"])})),
        immutable=frozenset({"KeyUsage", "KeySpec", "MultiRegion"}),
        create=Create("create_key", lambda name, p, tags: {
            **({"Description": str(p["Description"])} if "Description" in p else {}),
            **({"KeyUsage": p["KeyUsage"]} if "KeyUsage" in p else {}),
            **({"KeySpec": p["KeySpec"]} if "KeySpec" in p else {}),
            **({"Policy": json.dumps(p["KeyPolicy"])} if isinstance(p.get("KeyPolicy"), Mapping) else {}),
            "Tags": kv(tags, "TagKey", "TagValue")},
            then=(Write("enable_key_rotation", frozenset({"EnableKeyRotation"}),
                        lambda live, p: {"KeyId": live["KeyId"]} if _bool(p["EnableKeyRotation"]) else None),),
            id_from=lambda name, a: {"KeyId": a["KeyMetadata"]["KeyId"]}),
        skip_item=None,
    )


@register
class Alias(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::KMS::Alias", service="kms", name_property="AliasName",
        list=ListCall("list_aliases", "Aliases", ("Marker", "NextMarker"), {"Limit": 100}),
        item_id=lambda i: str(i["AliasName"]),
        ids=lambda i: {"AliasName": i["AliasName"]},
        props={"TargetKeyId": Prop("TargetKeyId", normalize=_key_id)},
        skip_item=lambda i: str(i.get("AliasName", "")).startswith("alias/aws/"),  # AWS-managed keys' aliases
        writes=(Write("update_alias", frozenset({"TargetKeyId"}),
                      lambda live, p: {"AliasName": live["AliasName"], "TargetKeyId": p["TargetKeyId"]}),),
        create=Create("create_alias", lambda name, p, tags: {"AliasName": name, "TargetKeyId": p["TargetKeyId"]}),
    )


@register
class Secret(SpecAdapter):
    """Metadata only: the secret's value is never read (GetSecretValue is not even in the IAM policy)."""

    table = TypeSpec(
        type_name="AWS::SecretsManager::Secret", service="secretsmanager", name_property="Name",
        list=ListCall("list_secrets", "SecretList", params={"MaxResults": 100}),
        item_id=lambda i: str(i["Name"]),
        ids=lambda i: {"SecretId": i["ARN"]},
        props={"Description": Prop("Description"), "KmsKeyId": Prop("KmsKeyId")},
        tags=Tags(set_op="tag_resource", set_params=lambda live, t: {"SecretId": live["SecretId"], "Tags": kv(t)},
                  unset_op="untag_resource",
                  unset_params=lambda live, k: {"SecretId": live["SecretId"], "TagKeys": k}),
        writes=(Write("update_secret", frozenset({"Description", "KmsKeyId"}),
                      lambda live, p: {"SecretId": live["SecretId"],
                                       **{k: str(p[k]) for k in ("Description", "KmsKeyId") if k in p}}),),
        not_read={"SecretString": "a secret's value is never read", "GenerateSecretString":
                  "generated at creation; the value is never read"},
        create=Create("create_secret", lambda name, p, tags: {
            "Name": name, **{k: str(p[k]) for k in ("Description", "KmsKeyId") if k in p},
            **({"SecretString": str(p["SecretString"])} if "SecretString" in p else {}),
            **({"Tags": kv(tags)} if tags else {})}),
    )


_ALARM = ("AlarmDescription", "ActionsEnabled", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
          "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
          "Unit", "EvaluateLowSampleCountPercentile", "ThresholdMetricId")
_ALARM_LISTS = ("AlarmActions", "OKActions", "InsufficientDataActions")
_ALARM_INT = ("Period", "EvaluationPeriods", "DatapointsToAlarm")


def _alarm_params(live: Live, p: Mapping[str, Any]) -> dict[str, Any]:
    """PutMetricAlarm replaces the whole alarm: what is not declared keeps its live value."""
    merged = {**{k: v for k, v in live.get("_raw", {}).items()}, **p}
    out: dict[str, Any] = {"AlarmName": live["AlarmName"]}
    for k in (*_ALARM, *_ALARM_LISTS, "Dimensions", "Metrics"):
        v = merged.get(k)
        if v is None:
            continue
        if k in _ALARM_INT:
            v = int(v)
        elif k == "Threshold":
            v = float(v)
        elif k == "ActionsEnabled":
            v = _bool(v)
        out[k] = v
    return out


@register
class Alarm(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::CloudWatch::Alarm", service="cloudwatch", name_property="AlarmName",
        list=ListCall("describe_alarms", "MetricAlarms", params={"MaxRecords": 100, "AlarmTypes": ["MetricAlarm"]}),
        item_id=lambda i: str(i["AlarmName"]),
        ids=lambda i: {"AlarmName": i["AlarmName"], "AlarmArn": i.get("AlarmArn"),
                       "_raw": {k: i.get(k) for k in (*_ALARM, *_ALARM_LISTS, "Dimensions", "Metrics")}},
        props={**{k: Prop(k) for k in (*_ALARM, *_ALARM_LISTS, "Metrics")},
               "Dimensions": Prop("Dimensions")},
        compare=CompareSpec(sets={**{f"/{k}": str for k in _ALARM_LISTS},
                                  "/Dimensions": lambda d: str(d.get("Name")) if isinstance(d, Mapping) else str(d)},
                            closed=("/Tags",)),
        tags=Tags(read=Read("list_tags_for_resource", lambda i: {"ResourceARN": i["AlarmArn"]}),
                  set_op="tag_resource", set_params=lambda live, t: {"ResourceARN": live["AlarmArn"], "Tags": kv(t)},
                  unset_op="untag_resource",
                  unset_params=lambda live, k: {"ResourceARN": live["AlarmArn"], "TagKeys": k}),
        writes=(Write("put_metric_alarm", frozenset({*_ALARM, *_ALARM_LISTS, "Dimensions", "Metrics"}),
                      _alarm_params),),
        create=Create("put_metric_alarm", lambda name, p, tags: {
            **_alarm_params({"AlarmName": name}, p), **({"Tags": kv(tags)} if tags else {})}),
    )
