"""Pure AWS comparison: CloudFormation's declared-only rule, set identities, IAM policy equivalences."""

from __future__ import annotations

from driftd.diff.aws_compare import CompareSpec, compare, prune_not_checked, tags_to_map
from driftd.diff.aws_policy import normalize_policy, policies_equal, statement_id, with_version
from driftd.model import REDACTED, AwsDeclaration, ChangeOp, ResourceKey, TargetKind
from driftd.targets.aws import registry
from driftd.targets.aws.adapters.ec2_security_group import normalize_rule, rule_id, rules_from_permissions
from driftd.targets.aws.adapters.s3_bucket import lifecycle_rule_to_api, lifecycle_rule_to_cfn


def decl(type_name: str, props: dict, not_checked: tuple[str, ...] = ()) -> AwsDeclaration:
    return AwsDeclaration(key=ResourceKey(TargetKind.AWS, type_name, "x", "us-east-1"), logical_id="X",
                          type=type_name, properties=props, not_checked=not_checked)


def test_only_declared_properties_and_scalars_as_templates_write_them() -> None:
    spec = CompareSpec()
    live = {"TTL": 300, "Enabled": True, "Extra": "aws default", "Nested": {"A": 1, "B": 2}}
    assert compare({"TTL": "300", "Enabled": "true", "Nested": {"A": "1"}}, live, spec) == []
    [c] = compare({"TTL": "60"}, live, spec)
    assert (c.path, c.expected, c.actual, c.op) == ("/TTL", "60", 300, ChangeOp.NOT_EQUAL)
    [c] = compare({"Missing": "x"}, live, spec)
    assert (c.path, c.op) == ("/Missing", ChangeOp.REMOVE)


def test_policy_equivalences() -> None:
    a = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
                                                "Condition": {"Bool": {"aws:SecureTransport": False}}}}
    b = '{"Version":"2012-10-17","Statement":[{"Resource":["*"],"Action":["s3:GetObject"],"Effect":"Allow",' \
        '"Condition":{"Bool":{"aws:SecureTransport":["false"]}}}]}'
    assert policies_equal(a, b)
    assert policies_equal({"Statement": [{"Effect": "Allow", "Action": "x:Y", "Resource": "*"}]},
                          "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow"
                          "%22%2C%22Action%22%3A%22x%3AY%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D")
    two = [{"Effect": "Allow", "Action": ["b:B", "a:A"], "Resource": "*"}, {"Effect": "Deny", "Action": "c:C",
                                                                           "Resource": "*"}]
    assert normalize_policy({"Statement": two}) == normalize_policy({"Statement": list(reversed(two))})
    assert not policies_equal({"Statement": two}, {"Statement": two[:1]})
    assert with_version({"Statement": []})["Version"] == "2012-10-17"
    assert statement_id({"Sid": "S", "Action": "a"}).startswith("S@")
    assert statement_id({"Action": "a"}) == statement_id({"Action": ["a"]})


def test_security_group_rules_are_a_set_keyed_by_protocol_ports_peer() -> None:
    assert rule_id({"IpProtocol": "6", "FromPort": "22", "ToPort": 22, "CidrIp": "192.168.1.0/0"}) == \
        "tcp:22:0.0.0.0/0"
    assert rule_id({"IpProtocol": -1, "FromPort": -1, "CidrIp": "10.0.0.0/8"}) == "-1:all:10.0.0.0/8"
    live = rules_from_permissions([{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81, "IpRanges": [
        {"CidrIp": "1.1.1.1/32", "Description": "a"}, {"CidrIp": "2.2.2.2/32"}],
        "UserIdGroupPairs": [{"GroupId": "sg-1"}]}], egress=False)
    assert sorted(rule_id(r) for r in live) == ["tcp:80-81:1.1.1.1/32", "tcp:80-81:2.2.2.2/32", "tcp:80-81:sg-1"]
    a = registry.get("AWS::EC2::SecurityGroup")
    assert a is not None
    d = decl(a.type_name, {"SecurityGroupIngress": [
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81, "CidrIp": "1.1.1.1/32", "Description": "b"},
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81, "CidrIp": "2.2.2.2/32"}]})
    changes = {c.path: c for c in a.compare(d, {"SecurityGroupIngress": live}, {})}
    assert changes["/SecurityGroupIngress/tcp:80-81:1.1.1.1~132/Description"].actual == "a"
    assert changes["/SecurityGroupIngress/tcp:80-81:sg-1"].op is ChangeOp.ADD
    assert len(changes) == 2
    assert normalize_rule({"IpProtocol": "all", "FromPort": 1})["IpProtocol"] == "-1"


def test_not_checked_pointers_are_never_drift() -> None:
    tree, skip = prune_not_checked({"A": {"B": 1, "C": 2}, "L": [{"X": 1}]}, ["/A/B", "/L/0/X"])
    assert tree == {"A": {"C": 2}, "L": [{"X": 1}]}
    assert ("L",) in skip
    spec = CompareSpec(sets={"/L": lambda r: str(r.get("X"))})
    assert compare({"A": {"B": 9}, "L": [{"X": 9}]}, {"A": {"B": 1}, "L": [{"X": 1}, {"X": 2}]}, spec,
                   ["/A/B", "/L/0/X"]) == []


def test_tags_closed_map_and_scope_tag_and_aws_tags() -> None:
    assert tags_to_map([{"Key": "a", "Value": 1}, {"Key": "aws:cloudformation:stack-id", "Value": "x"}]) == {"a": "1"}
    a = registry.get("AWS::S3::Bucket")
    assert a is not None
    d = decl(a.type_name, {"Tags": [{"Key": "team", "Value": "x"}], "Unread": "value"})
    live = {"Tags": [{"Key": "team", "Value": "x"}, {"Key": "scope", "Value": "s"}, {"Key": "new", "Value": "n"}]}
    [c] = a.compare(d, live, {"scope": "s"})
    assert (c.path, c.op, c.actual) == ("/Tags/new", ChangeOp.ADD, "n")


def test_secure_string_values_are_redacted() -> None:
    a = registry.get("AWS::SSM::Parameter")
    assert a is not None
    [c] = a.compare(decl(a.type_name, {"Type": "SecureString", "Value": "declared"}),
                    {"Type": "SecureString", "Value": "live"}, {})
    assert (c.expected, c.actual) == (REDACTED, REDACTED)
    changes = a.compare(decl(a.type_name, {"Type": "String", "Value": "declared"}),
                        {"Type": "SecureString", "Value": "live"}, {})
    assert sorted(c.path for c in changes) == ["/Type", "/Value"]
    text = str([c.to_dict() for c in changes])
    assert "declared" not in text
    assert "'live'" not in text


def test_public_access_block_absent_reads_all_false_and_lifecycle_round_trip() -> None:
    a = registry.get("AWS::S3::Bucket")
    assert a is not None
    d = decl(a.type_name, {"PublicAccessBlockConfiguration": {"BlockPublicAcls": "true"}})
    [c] = a.compare(d, {"PublicAccessBlockConfiguration": {"BlockPublicAcls": False}}, {})
    assert c.path == "/PublicAccessBlockConfiguration/BlockPublicAcls"
    rule = {"Id": "r", "Status": "Enabled", "Prefix": "tmp/", "ExpirationInDays": 7,
            "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 30}]}
    back = lifecycle_rule_to_cfn(lifecycle_rule_to_api(rule))
    assert {k: back[k] for k in rule} == rule


def test_unread_properties_are_not_checked() -> None:
    a = registry.get("AWS::Lambda::Function")
    assert a is not None
    assert a.compare(decl(a.type_name, {"Code": {"ZipFile": "x"}, "MemorySize": "128"}), {"MemorySize": 128}, {}) == []


def test_render_permissions_read_for_alert_write_for_enforce() -> None:
    import json
    from pathlib import Path

    from driftd.config import parse_config
    from driftd.engine.permissions import render_permissions

    def cfg(mode: str):  # type: ignore[no-untyped-def]
        return parse_config({"aws_accounts": [{"name": "a", "region": "us-east-1"}],
                             "repositories": [{"name": "r", "url": "file:///nonexistent"}],
                             "environments": [{"name": "e", "repository": "r", "branch": "main", "mode": mode,
                                               "aws": {"account": "a"}}]}, Path("/tmp/driftd.toml"))

    alert = json.loads(render_permissions(cfg("alert"), load=False))
    [read] = alert["aws"]["a"]["Statement"]
    assert "ec2:DescribeSecurityGroups" in read["Action"]
    assert not any(a.startswith(("ec2:Authorize", "s3:Put", "iam:Put")) for a in read["Action"])
    assert "every supported AWS type assumed" in alert["notes"][0]
    enforce = json.loads(render_permissions(cfg("enforce"), load=False))
    write = enforce["aws"]["a"]["Statement"][1]
    assert write["Sid"] == "DriftdRevert"
    assert "ec2:RevokeSecurityGroupIngress" in write["Action"]
