"""The older AWS types as tables (SSM Parameter, DynamoDB Table, AutoScaling Group, Lambda, BucketPolicy, IAM
Role): reads in as few calls as their hand-written adapters made, reverts carrying only what drifted,
against the sandbox's moto.

Operators drift through boto3 as the console would; the checks count the calls a declared-only pass makes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from driftd.config import AwsAccountSettings
from driftd.model import Action, ChangeOp, DesiredState, DriftKind
from driftd.sources.declarations import Context, parse_template
from driftd.targets.aws.session import Backoff
from driftd.targets.aws.target import AwsTarget
from tests.sandbox import Sandbox
from tests.test_aws_target import ACCOUNT_ID, aws_env, environment, paths  # noqa: F401 (fixture)

REGION = "eu-west-3"  # a region no other test uses: list pages are counted


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def target(aws_env: Sandbox) -> AsyncIterator[AwsTarget]:  # noqa: F811
    t = AwsTarget(AwsAccountSettings(name="moto", region=REGION, endpoint_url=aws_env.aws_endpoint))
    t.session("moto").backoff = Backoff(attempts=3, base=0.01)
    yield t
    await t.aclose()


def desired(text: str, params: dict[str, str]) -> DesiredState:
    r = parse_template(text.encode(), "t.yaml", Context(region=REGION, account_id=ACCOUNT_ID, stack_name="t",
                                                        parameters=params))
    assert not r.errors, r.errors
    return DesiredState(revision="r1", aws=r.declarations)


def functions(n: int) -> str:
    return "".join(f"""
  Fn{i}:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub fn{i}-${{Run}}
      Runtime: python3.12
      Handler: index.handler
      Timeout: 30
      Role: !Ref Role
      Code: {{ZipFile: "def handler(e, c): return 1"}}
""" for i in range(n))


TEMPLATE = """
Parameters: {Run: {Type: String}, Role: {Type: String}, LaunchTemplateId: {Type: String}}
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /${Run}/setting
      Type: String
      Description: declared
  Sessions:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub sessions-${Run}
      BillingMode: PROVISIONED
      ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: 5}
      StreamSpecification: {StreamViewType: NEW_IMAGE}
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      Tags: [{Key: team, Value: app}]
  Workers:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      AutoScalingGroupName: !Sub workers-${Run}
      MinSize: "0"
      MaxSize: "2"
      DesiredCapacity: "0"
      AvailabilityZones: [eu-west-3a]
      LaunchTemplate: {LaunchTemplateId: !Ref LaunchTemplateId, Version: "1"}
      Tags: [{Key: team, Value: app, PropagateAtLaunch: true}]
  AppRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub app-${Run}
      AssumeRolePolicyDocument:
        Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: "sts:AssumeRole"}]
      Policies:
        - PolicyName: read
          PolicyDocument: {Statement: [{Effect: Allow, Action: "s3:GetObject", Resource: "*"}]}
      Tags: [{Key: team, Value: app}]
  DataPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Sub data-${Run}
      PolicyDocument:
        Statement:
          - Sid: Deny
            Effect: Deny
            Principal: "*"
            Action: "s3:DeleteObject"
            Resource: !Sub "arn:aws:s3:::data-${Run}/*"
"""


@pytest.mark.anyio
async def test_older_types_as_tables_read_minimally_and_revert_only_what_drifted(aws_env: Sandbox,  # noqa: F811
                                                                                 target: AwsTarget) -> None:
    sb = aws_env
    run = "tb" + uuid.uuid4().hex[:8]

    def client(service: str) -> Any:
        return sb.boto3_client(service, region_name=REGION)
    iam, ec2, ssm = sb.boto3_client("iam"), client("ec2"), client("ssm")
    ddb, asg, lam = client("dynamodb"), client("autoscaling"), client("lambda")
    role = iam.create_role(RoleName=f"fn-{run}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    lt = ec2.create_launch_template(LaunchTemplateName=f"lt-{run}", LaunchTemplateData={
        "ImageId": ami, "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
    # The parameter's value is not declared (only its description): created by hand, it must survive reverts.
    ssm.put_parameter(Name=f"/{run}/setting", Value="keep-me", Type="String", Description="declared")
    s3 = client("s3")
    s3.create_bucket(Bucket=f"data-{run}", CreateBucketConfiguration={"LocationConstraint": REGION})
    params = {"Run": run, "Role": role, "LaunchTemplateId": lt}
    few, many = desired(TEMPLATE + functions(3), params), desired(TEMPLATE + functions(12), params)
    env = environment(run, unmanaged=False, baselines=False)  # declared only: the calls counted below

    first = await target.check(env, many, inventory=frozenset())
    assert first.errors == ()
    assert {d.key.name for d in first.drifts if d.drift is DriftKind.MISSING} == {
        f"sessions-{run}", f"workers-{run}", f"data-{run}", f"app-{run}", *(f"fn{i}-{run}" for i in range(12))}
    done = await target.revert(env, many, first.drifts)
    assert [d.reason for d in done if d.action is not Action.REVERTED] == []
    assert (await target.check(env, many, inventory=frozenset())).drifts == ()

    # Calls per declared-only check, type by type: few functions are asked for by name, many are listed.
    def only(d: DesiredState, kind: str) -> DesiredState:
        return DesiredState(revision="r1", aws=tuple(x for x in d.aws if x.type == kind))
    pages = list(lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 50}))
    assert sum(len(p["Functions"]) for p in pages) >= 12
    for state, kind, calls in ((few, "AWS::Lambda::Function", 3),  # GetFunctionConfiguration each
                               (many, "AWS::Lambda::Function", len(pages)),  # ListFunctions, 50 a page
                               (few, "AWS::SSM::Parameter", 2),  # DescribeParameters by name + GetParameters
                               (few, "AWS::DynamoDB::Table", 2),  # DescribeTable + ListTagsOfResource
                               (few, "AWS::AutoScaling::AutoScalingGroup", 1),  # by name, tags included
                               (few, "AWS::S3::BucketPolicy", 2),  # ListBuckets + GetBucketPolicy
                               # GetRole (tags included) + ListRolePolicies + GetRolePolicy
                               (few, "AWS::IAM::Role", 3)):
        r = await target.check(env, only(state, kind), inventory=frozenset())
        assert (kind, r.drifts, r.api_calls) == (kind, (), calls)

    # Operators drift each type.
    ssm.put_parameter(Name=f"/{run}/setting", Value="keep-me", Type="String", Description="console", Overwrite=True)
    ddb.update_table(TableName=f"sessions-{run}",
                     ProvisionedThroughput={"ReadCapacityUnits": 7, "WriteCapacityUnits": 5})
    ddb.tag_resource(ResourceArn=ddb.describe_table(TableName=f"sessions-{run}")["Table"]["TableArn"],
                     Tags=[{"Key": "owner", "Value": "mallory"}])
    asg.update_auto_scaling_group(AutoScalingGroupName=f"workers-{run}", MaxSize=5)
    asg.create_or_update_tags(Tags=[{"ResourceId": f"workers-{run}", "ResourceType": "auto-scaling-group",
                                     "Key": "team", "Value": "ops", "PropagateAtLaunch": True}])
    lam.update_function_configuration(FunctionName=f"fn1-{run}", Timeout=300)
    s3.delete_bucket_policy(Bucket=f"data-{run}")  # the bucket stays: its policy is missing
    iam.delete_role_policy(RoleName=f"app-{run}", PolicyName="read")
    iam.tag_role(RoleName=f"app-{run}", Tags=[{"Key": "team", "Value": "ops"}])

    r = await target.check(env, few, inventory=frozenset())
    assert r.errors == ()
    got = {d.key.name: paths(d) for d in r.drifts}
    assert sorted(got) == sorted([f"/{run}/setting", f"sessions-{run}", f"workers-{run}", f"fn1-{run}", f"data-{run}",
                                  f"app-{run}"])
    assert {d.key.name: d.drift for d in r.drifts}[f"data-{run}"] is DriftKind.MISSING
    assert sorted(got[f"app-{run}"]) == ["/Policies/read", "/Tags/team"]
    assert got[f"app-{run}"]["/Policies/read"].op is ChangeOp.REMOVE
    assert sorted(got[f"/{run}/setting"]) == ["/Description"]
    assert sorted(got[f"sessions-{run}"]) == ["/ProvisionedThroughput/ReadCapacityUnits", "/Tags/owner"]
    assert got[f"sessions-{run}"]["/Tags/owner"].op is ChangeOp.ADD
    assert sorted(got[f"workers-{run}"]) == ["/MaxSize", "/Tags/team"]
    assert (got[f"fn1-{run}"]["/Timeout"].expected, got[f"fn1-{run}"]["/Timeout"].actual) == (30, 300)

    # Revert: each change put back; the table update carries only the throughput (a re-sent, unchanged stream is
    # refused by DynamoDB), the parameter keeps its undeclared value.
    done = await target.revert(env, few, r.drifts)
    assert [(d.key.name, d.reason) for d in done if d.action is not Action.REVERTED] == []
    assert (await target.check(env, many, inventory=frozenset())).drifts == ()
    assert ssm.get_parameter(Name=f"/{run}/setting")["Parameter"]["Value"] == "keep-me"
    assert iam.list_role_policies(RoleName=f"app-{run}")["PolicyNames"] == ["read"]
    assert json.loads(s3.get_bucket_policy(Bucket=f"data-{run}")["Policy"])["Statement"][0]["Sid"] == "Deny"
    table = ddb.describe_table(TableName=f"sessions-{run}")["Table"]
    assert (table["ProvisionedThroughput"]["ReadCapacityUnits"], table["StreamSpecification"]["StreamEnabled"]) == (
        5, True)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"workers-{run}"])["AutoScalingGroups"][0]
    assert (group["MaxSize"], {t["Key"]: t["Value"] for t in group["Tags"]}["team"]) == (2, "app")


@pytest.mark.anyio
async def test_table_deployed_by_cloudformation_under_a_generated_name_is_found_by_its_tags(
        aws_env: Sandbox, target: AwsTarget) -> None:  # noqa: F811
    """An unnamed DynamoDB table (CloudFormation generated its name) is matched by its logical-id tag, its drift
    reported under the declaration, and its generated name not also listed as unmanaged."""
    sb = aws_env
    run = "tc" + uuid.uuid4().hex[:8]
    ddb = sb.boto3_client("dynamodb", region_name=REGION)
    env = environment(run, baselines=False)
    generated = f"t-Orders-{run.upper()}"
    ddb.create_table(TableName=generated, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     Tags=[{"Key": "aws:cloudformation:stack-name", "Value": env.name},
                           {"Key": "aws:cloudformation:logical-id", "Value": "Orders"},
                           {"Key": "driftd-test", "Value": run}])
    state = desired("""
Resources:
  Orders:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PROVISIONED
      ProvisionedThroughput: {ReadCapacityUnits: 5, WriteCapacityUnits: 5}
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
""", {})
    for unmanaged in (False, True):
        env = environment(run, baselines=False, unmanaged=unmanaged)
        r = await target.check(env, state, inventory=frozenset())
        assert r.errors == ()
        assert [(d.key.name, d.drift) for d in r.drifts] == [("Orders", DriftKind.MODIFIED)], r.drifts
        assert paths(r.drifts[0])["/BillingMode"].actual == "PAY_PER_REQUEST"
