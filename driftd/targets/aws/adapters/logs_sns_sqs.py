"""Tables: AWS::Logs::LogGroup, AWS::SNS::Topic, AWS::SQS::Queue (see ``spec.py`` for the shape)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ....diff.aws_compare import canonical_scalar
from ..base import Live
from ..registry import register
from ..spec import Create, ListCall, Prop, Read, SpecAdapter, Tags, TypeSpec, Write, kv


def _json(v: Any) -> Any:
    """A JSON document declared as an object or a string, read as a string: one canonical object."""
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _str(v: Any) -> str:
    return str(canonical_scalar(v))


def _attribute(name: str, parse: Callable[[Any], Any] | None = None) -> Callable[[Mapping[str, Any]], Any]:
    """One entry of a Get*Attributes answer's ``Attributes`` map (SNS, SQS)."""
    def get(answer: Mapping[str, Any]) -> Any:
        v = (answer.get("Attributes") or {}).get(name)
        return parse(v) if parse is not None and v is not None else v
    return get


@register
class LogGroup(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::Logs::LogGroup", service="logs", name_property="LogGroupName",
        list=ListCall("describe_log_groups", "logGroups", ("nextToken", "nextToken"), {"limit": 50}),
        item_id=lambda i: str(i["logGroupName"]),
        ids=lambda i: {"LogGroupName": i["logGroupName"]},
        props={"RetentionInDays": Prop("retentionInDays"), "KmsKeyId": Prop("kmsKeyId")},
        tags=Tags(read=Read("list_tags_log_group", lambda i: {"logGroupName": i["logGroupName"]}),
                  result_key="tags", shape="map",
                  set_op="tag_log_group", set_params=lambda live, t: {"logGroupName": live["LogGroupName"], "tags": t},
                  unset_op="untag_log_group",
                  unset_params=lambda live, k: {"logGroupName": live["LogGroupName"], "tags": k}),
        writes=(Write("put_retention_policy", frozenset({"RetentionInDays"}),
                      lambda live, p: {"logGroupName": live["LogGroupName"],
                                       "retentionInDays": int(p["RetentionInDays"])}),
                Write("associate_kms_key", frozenset({"KmsKeyId"}),
                      lambda live, p: {"logGroupName": live["LogGroupName"], "kmsKeyId": p["KmsKeyId"]})),
        create=Create("create_log_group",
                      lambda name, p, tags: {"logGroupName": name, **({"kmsKeyId": p["KmsKeyId"]} if p.get("KmsKeyId")
                                                                       else {}), **({"tags": tags} if tags else {})},
                      then=(Write("put_retention_policy", frozenset({"RetentionInDays"}),
                                  lambda live, p: {"logGroupName": live["LogGroupName"],
                                                   "retentionInDays": int(p["RetentionInDays"])}),),
                      id_from=lambda name, a: {"LogGroupName": name}),
    )


_TOPIC_ATTRS = {"DisplayName": "DisplayName", "KmsMasterKeyId": "KmsMasterKeyId", "FifoTopic": "FifoTopic",
                "ContentBasedDeduplication": "ContentBasedDeduplication", "SignatureVersion": "SignatureVersion",
                "TracingConfig": "TracingConfig"}


def _topic_writes(live: Live, p: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"TopicArn": live["TopicArn"], "AttributeName": a, "AttributeValue": _str(p[k])}
            for k, a in _TOPIC_ATTRS.items() if k in p and k not in ("FifoTopic",)]


@register
class Topic(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::SNS::Topic", service="sns", name_property="TopicName",
        list=ListCall("list_topics", "Topics"),
        item_id=lambda i: str(i["TopicArn"]).rsplit(":", 1)[-1],
        ids=lambda i: {"TopicArn": i["TopicArn"]},
        reads=(Read("get_topic_attributes", lambda i: {"TopicArn": i["TopicArn"]}),),
        props={k: Prop(_attribute(a), source=0) for k, a in _TOPIC_ATTRS.items()},
        tags=Tags(read=Read("list_tags_for_resource", lambda i: {"ResourceArn": i["TopicArn"]}),
                  set_op="tag_resource", set_params=lambda live, t: {"ResourceArn": live["TopicArn"], "Tags": kv(t)},
                  unset_op="untag_resource",
                  unset_params=lambda live, k: {"ResourceArn": live["TopicArn"], "TagKeys": k}),
        writes=(Write("set_topic_attributes", frozenset(_TOPIC_ATTRS) - {"FifoTopic"}, _topic_writes),),
        immutable=frozenset({"FifoTopic"}),
        create=Create("create_topic", lambda name, p, tags: {
            "Name": name, "Attributes": {a: _str(p[k]) for k, a in _TOPIC_ATTRS.items() if k in p},
            **({"Tags": kv(tags)} if tags else {})}),
    )


_QUEUE_ATTRS = ("DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                "VisibilityTimeout", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled",
                "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
                "RedrivePolicy", "RedriveAllowPolicy")
_QUEUE_JSON = ("RedrivePolicy", "RedriveAllowPolicy")


def _queue_value(k: str, v: Any) -> str:
    return json.dumps(v) if k in _QUEUE_JSON and not isinstance(v, str) else _str(v)


@register
class Queue(SpecAdapter):
    table = TypeSpec(
        type_name="AWS::SQS::Queue", service="sqs", name_property="QueueName",
        list=ListCall("list_queues", "QueueUrls", params={"MaxResults": 1000}),
        item_id=lambda u: str(u).rsplit("/", 1)[-1],
        ids=lambda u: {"QueueUrl": u},
        reads=(Read("get_queue_attributes", lambda u: {"QueueUrl": u, "AttributeNames": ["All"]}),),
        props={k: Prop(_attribute(k, _json if k in _QUEUE_JSON else None), source=0,
                       normalize=_json if k in _QUEUE_JSON else None) for k in _QUEUE_ATTRS},
        tags=Tags(read=Read("list_queue_tags", lambda u: {"QueueUrl": u}), shape="map",
                  set_op="tag_queue", set_params=lambda live, t: {"QueueUrl": live["QueueUrl"], "Tags": t},
                  unset_op="untag_queue", unset_params=lambda live, k: {"QueueUrl": live["QueueUrl"], "TagKeys": k}),
        writes=(Write("set_queue_attributes", frozenset(_QUEUE_ATTRS) - {"FifoQueue"},
                      lambda live, p: {"QueueUrl": live["QueueUrl"], "Attributes": {
                          k: _queue_value(k, p[k]) for k in _QUEUE_ATTRS if k in p and k != "FifoQueue"}}),),
        immutable=frozenset({"FifoQueue"}),
        create=Create("create_queue", lambda name, p, tags: {
            "QueueName": name, "Attributes": {k: _queue_value(k, p[k]) for k in _QUEUE_ATTRS if k in p},
            **({"tags": tags} if tags else {})}),
    )
