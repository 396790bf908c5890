"""AWS target against the sandbox's moto server: sync creates, operators drift, check finds, sync reverts."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftd.config import AwsAccountSettings, AwsEnvSettings, EnvironmentSettings
from driftd.diff.aws_compare import escape
from driftd.model import REDACTED, Action, ChangeOp, DesiredState, Drift, DriftKind, ResourceKey, TargetKind
from driftd.sources.declarations import Context, parse_template
from driftd.targets.aws import permissions as aws_permissions
from driftd.targets.aws import registry
from driftd.targets.aws.session import Backoff
from driftd.targets.aws.target import AwsTarget
from tests.sandbox import Sandbox

ACCOUNT_ID = "123456789012"  # moto's default account
SECRET = "s3cr3t-" + uuid.uuid4().hex  # must never appear in a report


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def aws_env(sandbox: Sandbox) -> Iterator[Sandbox]:
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ["AWS_ACCESS_KEY_ID"] = sandbox.aws_access_key_id
    os.environ["AWS_SECRET_ACCESS_KEY"] = sandbox.aws_secret_access_key
    os.environ["AWS_DEFAULT_REGION"] = sandbox.aws_region
    yield sandbox
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def account(sb: Sandbox, **kw: Any) -> AwsAccountSettings:
    return AwsAccountSettings(name="moto", region=sb.aws_region, endpoint_url=sb.aws_endpoint, **kw)


def environment(run: str, **kw: Any) -> EnvironmentSettings:
    return EnvironmentSettings(name=f"env-{run}", repository="r", branch="main",
                               aws=AwsEnvSettings(account="moto", tag_filter={"driftd-test": run}, **kw))


@pytest.fixture
async def target(aws_env: Sandbox) -> AsyncIterator[AwsTarget]:
    t = AwsTarget(account(aws_env))
    t.session("moto").backoff = Backoff(attempts=3, base=0.01)
    yield t
    SEEN.update(t.session("moto").seen_operations)
    await t.aclose()


SEEN: set[str] = set()  # every operation any test made, for the permissions test at the end

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Run: {Type: String}
  ManagedPolicy: {Type: String}
  LaunchTemplateId: {Type: String}
  Zone: {Type: String}
  Secret: {Type: String}
Resources:
  Web:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: !Sub web-${Run}
      GroupDescription: web servers
      SecurityGroupIngress:
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8, Description: https}
        - {IpProtocol: tcp, FromPort: "22", ToPort: "22", CidrIp: 10.1.0.0/16}
      Tags:
        - {Key: team, Value: web}
        - {Key: driftd-test, Value: !Ref Run}
  Data:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub data-${Run}
      VersioningConfiguration: {Status: Enabled}
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault: {SSEAlgorithm: AES256}
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
      LifecycleConfiguration:
        Rules:
          - {Id: expire-tmp, Status: Enabled, Prefix: tmp/, ExpirationInDays: 7}
      Tags:
        - {Key: team, Value: data}
  DataPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Data
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: DenyInsecure
            Effect: Deny
            Principal: "*"
            Action: "s3:*"
            Resource: [!Sub "arn:aws:s3:::data-${Run}", !Sub "arn:aws:s3:::data-${Run}/*"]
            Condition: {Bool: {"aws:SecureTransport": false}}
  AppRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub app-${Run}
      Description: the app
      MaxSessionDuration: 3600
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: read-data
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - {Effect: Allow, Action: "s3:GetObject", Resource: !Sub "arn:aws:s3:::data-${Run}/*"}
      ManagedPolicyArns: [!Ref ManagedPolicy]
      Tags:
        - {Key: team, Value: app}
  Endpoint:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /${Run}/endpoint
      Type: String
      Value: https://example.com
      Description: where the app talks to
      Tags: {team: app}
  Password:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /${Run}/password
      Type: SecureString
      Value: !Ref Secret
  Workers:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      AutoScalingGroupName: !Sub workers-${Run}
      MinSize: "1"
      MaxSize: "3"
      DesiredCapacity: "1"
      AvailabilityZones: [us-east-1a]
      LaunchTemplate: {LaunchTemplateId: !Ref LaunchTemplateId, Version: "1"}
  ApiRecord:
    Type: AWS::Route53::RecordSet
    Properties:
      HostedZoneName: !Ref Zone
      Name: !Sub api.${Zone}
      Type: A
      TTL: "300"
      ResourceRecords: [10.0.0.1]
  Sessions:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub sessions-${Run}
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}
      Tags: [{Key: team, Value: app}]
  Handler:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub handler-${Run}
      Runtime: python3.12
      Handler: index.handler
      MemorySize: 256
      Timeout: 30
      Role: !Sub arn:aws:iam::${AWS::AccountId}:role/app-${Run}
      Environment: {Variables: {STAGE: test}}
      Code: {ZipFile: "def handler(event, context):\\n    return 1\\n"}
  Images:
    Type: AWS::ECR::Repository
    Properties:
      RepositoryName: !Sub images-${Run}
      ImageTagMutability: IMMUTABLE
      ImageScanningConfiguration: {ScanOnPush: true}
"""


def declarations(text: str, params: dict[str, str], region: str = "us-east-1", name: str = "t.yaml") -> DesiredState:
    result = parse_template(text.encode(), name, Context(region=region, account_id=ACCOUNT_ID, stack_name="t",
                                                          parameters=params))
    assert not result.errors, result.errors
    return DesiredState(revision="r1", aws=result.declarations)


def prerequisites(sb: Sandbox, run: str) -> dict[str, str]:
    """What the template refers to but does not declare: a managed policy, a launch template, a zone."""
    iam = sb.boto3_client("iam")
    pol = iam.create_policy(PolicyName=f"base-{run}", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}))
    ec2 = sb.boto3_client("ec2")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    lt = ec2.create_launch_template(LaunchTemplateName=f"lt-{run}",
                                    LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"})
    zone = f"{run}.example.com."
    sb.boto3_client("route53").create_hosted_zone(Name=zone, CallerReference=run)
    return {"Run": run, "ManagedPolicy": pol["Policy"]["Arn"],
            "LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Zone": zone, "Secret": SECRET}


def by_kind(drifts: tuple[Drift, ...]) -> dict[tuple[str, str], Drift]:
    return {(d.key.kind, d.key.name): d for d in drifts}


def paths(d: Drift) -> dict[str, Any]:
    return {c.path: c for c in d.changes}


def report_json(drifts: tuple[Drift, ...]) -> str:
    return json.dumps([d.to_dict() for d in drifts], default=str)


REQUIRED = {"AWS::EC2::SecurityGroup", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::IAM::Role",
            "AWS::SSM::Parameter", "AWS::AutoScaling::AutoScalingGroup", "AWS::Route53::RecordSet",
            "AWS::DynamoDB::Table", "AWS::Lambda::Function", "AWS::ECR::Repository"}


@pytest.mark.anyio
async def test_sync_creates_then_detects_every_drift_and_reverts(aws_env: Sandbox, target: AwsTarget) -> None:
    sb = aws_env
    run = "t" + uuid.uuid4().hex[:8]
    params = prerequisites(sb, run)
    desired = declarations(TEMPLATE, params)
    assert {d.type for d in desired.aws} == REQUIRED
    env = environment(run)

    # 1. Nothing exists: every declaration is missing; sync creates them all; then zero drift.
    first = await target.check(env, desired, inventory=frozenset())
    assert not first.errors, first.errors
    assert {d.drift for d in first.drifts} == {DriftKind.MISSING}
    assert len(first.drifts) == len(desired.aws) == first.resources
    done = await target.revert(env, desired, first.drifts)
    assert [d.reason for d in done if d.action is not Action.REVERTED] == []
    clean = await target.check(env, desired, inventory=frozenset())
    assert clean.errors == ()
    assert clean.drifts == (), report_json(clean.drifts)
    assert clean.api_calls > 0
    assert clean.coverage["AWS::EC2::SecurityGroup"] == (1, 1)

    # 2. Operators drift everything, through the AWS API as the console would.
    ec2, s3, iam = sb.boto3_client("ec2"), sb.boto3_client("s3"), sb.boto3_client("iam")
    ssm, asg, r53 = sb.boto3_client("ssm"), sb.boto3_client("autoscaling"), sb.boto3_client("route53")
    ddb, lam, ecr = sb.boto3_client("dynamodb"), sb.boto3_client("lambda"), sb.boto3_client("ecr")
    gid = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"web-{run}"]}])[
        "SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    ec2.delete_tags(Resources=[gid], Tags=[{"Key": "team"}])
    ec2.create_tags(Resources=[gid], Tags=[{"Key": "owner", "Value": "mallory"}])
    bucket = f"data-{run}"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.delete_public_access_block(Bucket=bucket)
    s3.delete_bucket_encryption(Bucket=bucket)
    pol = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    pol["Statement"].append({"Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                             "Resource": f"arn:aws:s3:::{bucket}/*"})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(pol))
    role = f"app-{run}"
    iam.put_role_policy(RoleName=role, PolicyName="read-data", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    admin = iam.create_policy(PolicyName=f"admin-{run}", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    iam.attach_role_policy(RoleName=role, PolicyArn=admin["Policy"]["Arn"])
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                 "Action": "sts:AssumeRole"}]}))
    ssm.put_parameter(Name=f"/{run}/endpoint", Value="https://evil.example", Type="String", Overwrite=True)
    leaked = "leaked-" + uuid.uuid4().hex
    ssm.put_parameter(Name=f"/{run}/password", Value=leaked, Type="SecureString", Overwrite=True)
    asg.set_desired_capacity(AutoScalingGroupName=f"workers-{run}", DesiredCapacity=2)
    zid = r53.list_hosted_zones_by_name(DNSName=params["Zone"])["HostedZones"][0]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": f"api.{params['Zone']}", "Type": "A", "TTL": 300,
                              "ResourceRecords": [{"Value": "10.0.0.2"}]}}]})
    ddb.update_continuous_backups(TableName=f"sessions-{run}",
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
    lam.update_function_configuration(FunctionName=f"handler-{run}", MemorySize=1024,
                                      Environment={"Variables": {"STAGE": "test", "DEBUG": "1"}})
    ecr.delete_repository(repositoryName=f"images-{run}", force=True)
    rogue = ec2.create_security_group(GroupName=f"rogue-{run}", Description="console", TagSpecifications=[
        {"ResourceType": "security-group", "Tags": [{"Key": "driftd-test", "Value": run}]}])["GroupId"]

    # 3. Check finds each, with the right path.
    r = await target.check(env, desired, inventory=frozenset())
    assert r.errors == ()
    got = by_kind(r.drifts)
    sg = paths(got[("AWS::EC2::SecurityGroup", f"web-{run}")])
    assert sg[f"/SecurityGroupIngress/{escape('tcp:22:0.0.0.0/0')}"].op is ChangeOp.ADD
    assert sg["/SecurityGroupIngress/tcp:443:10.0.0.0~18"].op is ChangeOp.REMOVE
    assert sg["/SecurityGroupIngress/tcp:443:10.0.0.0~18"].expected["Description"] == "https"
    assert sg["/Tags/team"].op is ChangeOp.REMOVE
    assert sg["/Tags/team"].expected == "web"
    assert sg["/Tags/owner"].op is ChangeOp.ADD
    assert sg["/Tags/owner"].actual == "mallory"
    assert len(sg) == 4, sg
    b = paths(got[("AWS::S3::Bucket", bucket)])
    assert (b["/VersioningConfiguration/Status"].expected, b["/VersioningConfiguration/Status"].actual) == (
        "Enabled", "Suspended")
    assert b["/PublicAccessBlockConfiguration/BlockPublicAcls"].actual is False
    assert b["/BucketEncryption"].op is ChangeOp.REMOVE
    bp = got[("AWS::S3::BucketPolicy", bucket)]
    assert [(c.op, c.path.split("/")[-1].split("@")[0]) for c in bp.changes] == [(ChangeOp.ADD, "Public")]
    assert bp.changes[0].path.startswith("/PolicyDocument/Statement/")
    rp = paths(got[("AWS::IAM::Role", role)])
    inline = [p for p in rp if p.startswith("/Policies/read-data/PolicyDocument/Statement/")]
    assert sorted(rp[p].op for p in inline) == [ChangeOp.ADD, ChangeOp.REMOVE]
    assert rp["/ManagedPolicyArns/" + escape(admin["Policy"]["Arn"])].op is ChangeOp.ADD
    trust = [p for p in rp if p.startswith("/AssumeRolePolicyDocument/Statement/")]
    assert sorted(rp[p].op for p in trust) == [ChangeOp.ADD, ChangeOp.REMOVE]
    ep = paths(got[("AWS::SSM::Parameter", f"/{run}/endpoint")])
    assert (ep["/Value"].expected, ep["/Value"].actual) == ("https://example.com", "https://evil.example")
    pw = paths(got[("AWS::SSM::Parameter", f"/{run}/password")])
    assert (pw["/Value"].expected, pw["/Value"].actual) == (REDACTED, REDACTED)
    text = report_json(r.drifts)
    assert SECRET not in text
    assert leaked not in text
    assert paths(got[("AWS::AutoScaling::AutoScalingGroup", f"workers-{run}")])["/DesiredCapacity"].actual == 2
    rec = paths(got[("AWS::Route53::RecordSet", f"api.{params['Zone']}")])
    assert rec["/ResourceRecords/10.0.0.1"].op is ChangeOp.REMOVE
    assert rec["/ResourceRecords/10.0.0.2"].op is ChangeOp.ADD
    t = paths(got[("AWS::DynamoDB::Table", f"sessions-{run}")])
    assert t["/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled"].actual is False
    fn = paths(got[("AWS::Lambda::Function", f"handler-{run}")])
    assert fn["/MemorySize"].actual == 1024
    assert fn["/Environment/Variables/DEBUG"].op is ChangeOp.ADD
    assert got[("AWS::ECR::Repository", f"images-{run}")].drift is DriftKind.MISSING
    assert got[("AWS::EC2::SecurityGroup", f"rogue-{run}")].drift is DriftKind.UNMANAGED
    assert r.coverage["AWS::EC2::SecurityGroup"] == (1, 2)
    assert len(r.drifts) == 12, sorted(got)

    # 4. Sync reverts each (unmanaged is report-only); then only the unmanaged group remains.
    done = await target.revert(env, desired, r.drifts)
    actions = {(d.key.kind, d.key.name): (d.action, d.reason) for d in done}
    assert actions.pop(("AWS::EC2::SecurityGroup", f"rogue-{run}"))[0] is Action.SKIPPED
    assert {k: v for k, v in actions.items() if v[0] is not Action.REVERTED} == {}
    after = await target.check(env, desired, inventory=frozenset())
    assert [(d.key.name, d.drift) for d in after.drifts] == [(f"rogue-{run}", DriftKind.UNMANAGED)]
    assert ssm.get_parameter(Name=f"/{run}/password", WithDecryption=True)["Parameter"]["Value"] == SECRET
    ec2.delete_security_group(GroupId=rogue)
    final = await target.check(env, desired, inventory=frozenset())
    assert final.drifts == ()
    assert final.errors == ()

    # 5. Every call made above is covered by the least-privilege policy for these types (enforce).
    policy = aws_permissions.iam_policy(REQUIRED, enforce=True)
    allowed = {a for st in policy["Statement"] for a in st["Action"]}
    seen = target.session("moto").seen_operations
    assert {aws_permissions.iam_action(op) for op in seen} - allowed == set()
    read_only = {a for st in aws_permissions.iam_policy(REQUIRED, enforce=False)["Statement"] for a in st["Action"]}
    assert {aws_permissions.iam_action(op) for op in seen if op.split(":")[1].startswith(
        ("Describe", "Get", "List"))} <= read_only


@pytest.mark.anyio
async def test_orphaned_and_throttled_and_minimal_calls(aws_env: Sandbox, target: AwsTarget) -> None:
    sb = aws_env
    run = "o" + uuid.uuid4().hex[:8]
    tmpl = """
Parameters: {Run: {Type: String}}
Resources:
  A:
    Type: AWS::EC2::SecurityGroup
    Properties: {GroupName: !Sub "a-${Run}", GroupDescription: a, Tags: [{Key: driftd-test, Value: !Ref Run}]}
  B:
    Type: AWS::SSM::Parameter
    Properties: {Name: !Sub "/${Run}/b", Type: String, Value: "1"}
"""
    desired = declarations(tmpl, {"Run": run})
    env = environment(run, unmanaged=False)
    await target.revert(env, desired, (await target.check(env, desired, inventory=frozenset())).drifts)
    r = await target.check(env, desired, inventory=frozenset())
    assert r.drifts == ()
    # Batched reads: one DescribeSecurityGroups (+ default VPC lookup) and one GetParameters.
    assert r.api_calls <= 3, r.api_calls

    # A group declared at the last revision, gone from Git, still live: orphaned, never deleted.
    sb.boto3_client("ec2").create_security_group(GroupName=f"old-{run}", Description="x")
    old = ResourceKey(TargetKind.AWS, "AWS::EC2::SecurityGroup", f"old-{run}", sb.aws_region)
    gone = ResourceKey(TargetKind.AWS, "AWS::EC2::SecurityGroup", f"gone-{run}", sb.aws_region)
    r = await target.check(env, desired, inventory=frozenset({old, gone, *(d.key for d in desired.aws)}))
    assert [(d.key, d.drift) for d in r.drifts] == [(old, DriftKind.ORPHANED)]
    done = await target.revert(env, desired, r.drifts)
    assert done[0].action is Action.SKIPPED

    # Throttled reads: the group is unknown (an error), never drift; the parameter is still checked.
    def throttle(client: Any) -> None:
        def refuse(**_: Any) -> Any:
            from botocore.awsrequest import AWSResponse

            return (AWSResponse("http://x", 400, {}, None),
                    {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}, "ResponseMetadata": {
                        "HTTPStatusCode": 400}})
        client.meta.events.register("before-call.ec2.DescribeSecurityGroups", refuse)

    target.session("moto").add_client_hook(throttle)
    sb.boto3_client("ssm").put_parameter(Name=f"/{run}/b", Value="2", Type="String", Overwrite=True)
    r = await target.check(env, desired, inventory=frozenset())
    assert len(r.errors) == 1
    assert "throttled" in r.errors[0]
    assert f"a-{run}" in r.errors[0]
    assert [(d.key.name, d.drift) for d in r.drifts] == [(f"/{run}/b", DriftKind.MODIFIED)]


@pytest.mark.anyio
async def test_assume_role_and_web_identity_credentials(aws_env: Sandbox, tmp_path: Any) -> None:
    sb = aws_env
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/driftd-reader"
    t = AwsTarget(account(sb, role_arn=role_arn))
    try:
        ident = await t.session("moto").call("sts", "get_caller_identity")
        assert ":assumed-role/driftd-reader/driftd-moto" in ident["Arn"]
    finally:
        await t.aclose()
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.e30.sig\n")
    t = AwsTarget(account(sb, role_arn=role_arn, web_identity_token_file=token))
    try:
        ident = await t.session("moto").call("sts", "get_caller_identity")
        assert ":assumed-role/driftd-reader/" in ident["Arn"]
    finally:
        await t.aclose()


def test_registry_declares_permissions_for_every_adapter() -> None:
    adapters = registry.adapters()
    assert REQUIRED <= set(adapters)
    for name, a in adapters.items():
        assert a.type_name == name
        assert a.read_permissions, name
        assert a.revert_permissions, name
        for action in (*a.read_permissions, *a.revert_permissions):
            service, _, op = action.partition(":")
            assert service, (name, action)
            assert op[:1].isupper(), (name, action)
        read = set(aws_permissions.iam_policy([name], enforce=False)["Statement"][0]["Action"])
        assert set(a.read_permissions) <= read
        enforce = {x for st in aws_permissions.iam_policy([name], enforce=True)["Statement"] for x in st["Action"]}
        assert set(a.revert_permissions) <= enforce
        assert not set(a.revert_permissions) - set(a.read_permissions) & read, name  # observe cannot write


CORPUS = Path(__file__).parent / "data" / "corpus" / "cloudformation"


@pytest.mark.anyio
async def test_corpus_templates_sync_to_zero_drift(aws_env: Sandbox, target: AwsTarget) -> None:
    run = "c" + uuid.uuid4().hex[:8]
    params = {"KeyName": "k", "Subnets": "subnet-1", "BucketName": f"corpus-{run}", "PublisherAccountID": ACCOUNT_ID}
    decls = []
    for f in sorted(CORPUS.rglob("*.yaml")):
        result = parse_template(f.read_bytes(), f.name, Context(region=aws_env.aws_region, account_id=ACCOUNT_ID,
                                                                 stack_name="corpus", parameters=params))
        assert not result.errors, result.errors
        decls += result.declarations
    desired = DesiredState(revision="r1", aws=tuple(decls))
    checked = [d for d in desired.aws if registry.get(d.type) is not None]
    assert {d.type for d in checked} == {"AWS::EC2::SecurityGroup", "AWS::S3::Bucket", "AWS::S3::BucketPolicy"}
    env = environment(run)
    first = await target.check(env, desired, inventory=frozenset())
    assert first.errors == ()
    done = await target.revert(env, desired, first.drifts)
    assert [(d.key.name, d.reason) for d in done if d.action is not Action.REVERTED] == []
    r = await target.check(env, desired, inventory=frozenset())
    assert r.errors == ()
    assert r.drifts == (), report_json(r.drifts)
    assert r.resources == len(checked)
