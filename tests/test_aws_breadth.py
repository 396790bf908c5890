"""The types real templates use beyond the first ten (issue 15 §3), each a table (``targets/aws/spec.py``): sync
creates them in moto, check finds zero drift, an operator changes each through boto3, check reports each change
at its path, sync reverts, check is clean again; every call made is in the least-privilege policy."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from driftd.diff.aws_compare import escape
from driftd.model import Action, ChangeOp, DriftKind
from driftd.targets.aws import permissions as aws_permissions
from driftd.targets.aws import registry
from driftd.targets.aws.session import Backoff
from driftd.targets.aws.target import AwsTarget
from tests.sandbox import Sandbox
from tests.test_aws_target import ACCOUNT_ID, account, by_kind, declarations, environment, paths, report_json

NEW_TYPES = {"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable", "AWS::EC2::EIP", "AWS::EC2::LaunchTemplate",
             "AWS::IAM::InstanceProfile", "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::RolePolicy",
             "AWS::CloudWatch::Alarm", "AWS::Logs::LogGroup", "AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::KMS::Key",
             "AWS::KMS::Alias", "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::SecretsManager::Secret",
             "AWS::ElasticLoadBalancingV2::Listener"}
LISTENER = "AWS::ElasticLoadBalancingV2::Listener"

TEMPLATE = """
Parameters:
  Run: {Type: String}
  Secret: {Type: String, NoEcho: true}
Resources:
  Network:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: 10.42.0.0/16
      EnableDnsSupport: true
      EnableDnsHostnames: true
      Tags: [{Key: Name, Value: !Sub "net-${Run}"}]
  PublicSubnet:
    Type: AWS::EC2::Subnet
    Metadata: {driftd.io/physical-id: SUBNET_ID}
    Properties:
      VpcId: VPC_ID
      CidrBlock: 10.42.1.0/24
      MapPublicIpOnLaunch: false
      Tags: [{Key: tier, Value: public}]
  Routes:
    Type: AWS::EC2::RouteTable
    Properties:
      VpcId: VPC_ID
      Tags: [{Key: tier, Value: public}]
  Address:
    Type: AWS::EC2::EIP
    Properties:
      Domain: vpc
      Tags: [{Key: use, Value: nat}]
  Template:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateName: !Sub "lt-${Run}"
      LaunchTemplateData:
        InstanceType: t3.micro
        ImageId: ami-12c6146b
        MetadataOptions: {HttpTokens: required}
  AppRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub "app-${Run}"
      AssumeRolePolicyDocument:
        Statement: [{Effect: Allow, Principal: {Service: ec2.amazonaws.com}, Action: "sts:AssumeRole"}]
  Profile:
    Type: AWS::IAM::InstanceProfile
    Properties:
      InstanceProfileName: !Sub "profile-${Run}"
      Roles: [!Ref AppRole]
  Managed:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      ManagedPolicyName: !Sub "managed-${Run}"
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement: [{Sid: Logs, Effect: Allow, Action: "logs:PutLogEvents", Resource: "*"}]
  Inline:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: !Sub "inline-${Run}"
      Roles: [!Ref AppRole]
      PolicyDocument:
        Version: "2012-10-17"
        Statement: [{Sid: Read, Effect: Allow, Action: "s3:GetObject", Resource: "*"}]
  RoleInline:
    Type: AWS::IAM::RolePolicy
    Properties:
      RoleName: !Ref AppRole
      PolicyName: queue-access
      PolicyDocument:
        Version: "2012-10-17"
        Statement: [{Sid: Sqs, Effect: Allow, Action: "sqs:SendMessage", Resource: "*"}]
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub "/app/${Run}"
      RetentionInDays: 30
      Tags: [{Key: team, Value: app}]
  Alerts:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "alerts-${Run}"
      DisplayName: Alerts
      Tags: [{Key: team, Value: app}]
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "jobs-${Run}"
      VisibilityTimeout: 60
      MessageRetentionPeriod: 86400
      Tags: [{Key: team, Value: app}]
  DataKey:
    Type: AWS::KMS::Key
    Properties:
      Description: data key
      EnableKeyRotation: true
      Tags: [{Key: team, Value: app}]
  DataKeyAlias:
    Type: AWS::KMS::Alias
    Properties:
      AliasName: !Sub "alias/data-${Run}"
      TargetKeyId: KEY_ID
  DbPassword:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Sub "db-${Run}"
      Description: database password
      SecretString: !Ref Secret
      Tags: [{Key: team, Value: app}]
  Errors:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub "errors-${Run}"
      Namespace: App
      MetricName: Errors
      Statistic: Sum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 5
      ComparisonOperator: GreaterThanThreshold
      AlarmActions: [!Sub "arn:aws:sns:us-east-1:${AWS::AccountId}:alerts-${Run}"]
  Web:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties:
      Name: !Sub "web-${Run}"
      Protocol: HTTP
      Port: 80
      VpcId: VPC_ID
      HealthCheckPath: /healthz
      HealthyThresholdCount: 3
      Tags: [{Key: team, Value: web}]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def aws_env(sandbox: Sandbox) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in sandbox.env().items():
            mp.setenv(k, v)
        yield sandbox


@pytest.fixture
async def target(aws_env: Sandbox) -> AsyncIterator[AwsTarget]:
    t = AwsTarget(account(aws_env))
    t.session("moto").backoff = Backoff(attempts=3, base=0.01)
    yield t
    await t.aclose()


def test_every_new_type_has_a_table() -> None:
    assert NEW_TYPES <= set(registry.adapters())


@pytest.mark.anyio
async def test_new_types_sync_drift_revert(aws_env: Sandbox, target: AwsTarget) -> None:
    sb = aws_env
    run = "b" + uuid.uuid4().hex[:8]
    secret = "pw-" + uuid.uuid4().hex
    ec2 = sb.boto3_client("ec2")
    # What the template refers to by id: a VPC and subnet made beforehand (the subnet is adopted by its id),
    # and a key for the alias (a template would !Ref DataKey, which needs the stack).
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.43.1.0/24")["Subnet"]["SubnetId"]
    key = sb.boto3_client("kms").create_key(Description="alias target")["KeyMetadata"]["KeyId"]
    text = (TEMPLATE.replace("VPC_ID", vpc).replace("SUBNET_ID", subnet).replace("KEY_ID", key)
            .replace("CidrBlock: 10.42.1.0/24", "CidrBlock: 10.43.1.0/24"))
    desired = declarations(text, {"Run": run, "Secret": secret})
    env = environment(run, unmanaged=False)
    assert NEW_TYPES - {LISTENER} <= {d.type for d in desired.aws}  # the listener has a test of its own

    first = await target.check(env, desired, inventory=frozenset())
    assert first.errors == (), first.errors
    missing = {d.key.kind for d in first.drifts if d.drift is DriftKind.MISSING}
    assert missing == NEW_TYPES - {"AWS::EC2::Subnet", LISTENER} | {"AWS::IAM::Role"}, report_json(first.drifts)
    done = await target.revert(env, desired, first.drifts)
    failed = [(d.key.kind, d.reason) for d in done if d.action is not Action.REVERTED]
    assert failed == [], failed
    clean = await target.check(env, desired, inventory=frozenset())
    assert clean.errors == ()
    assert clean.drifts == (), report_json(clean.drifts)
    assert clean.resources == len(desired.aws)
    assert secret not in report_json(clean.drifts)

    # Operators change each, through the API.
    logs, sns, sqs = sb.boto3_client("logs"), sb.boto3_client("sns"), sb.boto3_client("sqs")
    iam, kms, sm = sb.boto3_client("iam"), sb.boto3_client("kms"), sb.boto3_client("secretsmanager")
    cw, elb = sb.boto3_client("cloudwatch"), sb.boto3_client("elbv2")
    net = [v for v in ec2.describe_vpcs()["Vpcs"] if {"Key": "Name", "Value": f"net-{run}"} in (v.get("Tags") or [])]
    assert len(net) == 1
    ec2.modify_vpc_attribute(VpcId=net[0]["VpcId"], EnableDnsHostnames={"Value": False})
    ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"lt-{run}"])["LaunchTemplates"][0]
    v2 = ec2.create_launch_template_version(LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData={
        "InstanceType": "t3.micro", "ImageId": "ami-12c6146b", "MetadataOptions": {"HttpTokens": "optional"}})
    ec2.modify_launch_template(LaunchTemplateId=lt["LaunchTemplateId"],
                               DefaultVersion=str(v2["LaunchTemplateVersion"]["VersionNumber"]))
    iam.remove_role_from_instance_profile(InstanceProfileName=f"profile-{run}", RoleName=f"app-{run}")
    managed_arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/managed-{run}"
    iam.create_policy_version(PolicyArn=managed_arn, SetAsDefault=True, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Sid": "Logs", "Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    def doc(sid: str, action: str) -> str:
        return json.dumps({"Version": "2012-10-17",
                           "Statement": [{"Sid": sid, "Effect": "Allow", "Action": action, "Resource": "*"}]})
    iam.put_role_policy(RoleName=f"app-{run}", PolicyName=f"inline-{run}", PolicyDocument=doc("Read", "s3:*"))
    iam.put_role_policy(RoleName=f"app-{run}", PolicyName="queue-access", PolicyDocument=doc("Sqs", "sqs:*"))
    logs.put_retention_policy(logGroupName=f"/app/{run}", retentionInDays=1)
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:alerts-{run}"
    sns.set_topic_attributes(TopicArn=topic, AttributeName="DisplayName", AttributeValue="Pwned")
    q = sqs.get_queue_url(QueueName=f"jobs-{run}")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=q, Attributes={"VisibilityTimeout": "5"})
    sqs.tag_queue(QueueUrl=q, Tags={"owner": "mallory"})
    data_key = [k for k in kms.list_keys()["Keys"]
                if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"].get("Description") == "data key"
                and any(t["TagKey"] == "driftd:logical-id" for t in kms.list_resource_tags(KeyId=k["KeyId"])["Tags"])]
    assert data_key
    kms.disable_key_rotation(KeyId=data_key[-1]["KeyId"])
    other = kms.create_key(Description="other")["KeyMetadata"]["KeyId"]
    kms.update_alias(AliasName=f"alias/data-{run}", TargetKeyId=other)
    sm.update_secret(SecretId=f"db-{run}", Description="changed")
    cw.put_metric_alarm(AlarmName=f"errors-{run}", Namespace="App", MetricName="Errors", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=500, ComparisonOperator="GreaterThanThreshold",
                        AlarmActions=[topic])
    tg = elb.describe_target_groups(Names=[f"web-{run}"])["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group(TargetGroupArn=tg, HealthCheckPath="/")
    eip = [a for a in ec2.describe_addresses()["Addresses"]
           if {"Key": "use", "Value": "nat"} in (a.get("Tags") or [])
           and {"Key": "driftd:logical-id", "Value": "Address"} in (a.get("Tags") or [])]
    assert len(eip) >= 1
    ec2.create_tags(Resources=[eip[-1]["AllocationId"]], Tags=[{"Key": "use", "Value": "other"}])

    r = await target.check(env, desired, inventory=frozenset())
    assert r.errors == ()
    got = by_kind(r.drifts)
    expect = {
        ("AWS::EC2::VPC", "Network"): "/EnableDnsHostnames",
        ("AWS::EC2::Subnet", subnet): "/MapPublicIpOnLaunch",
        ("AWS::EC2::EIP", "Address"): "/Tags/use",
        ("AWS::EC2::LaunchTemplate", f"lt-{run}"): "/LaunchTemplateData/MetadataOptions/HttpTokens",
        ("AWS::IAM::InstanceProfile", f"profile-{run}"): f"/Roles/app-{run}",
        ("AWS::Logs::LogGroup", f"/app/{run}"): "/RetentionInDays",
        ("AWS::SNS::Topic", f"alerts-{run}"): "/DisplayName",
        ("AWS::SQS::Queue", f"jobs-{run}"): "/VisibilityTimeout",
        ("AWS::KMS::Key", "DataKey"): "/EnableKeyRotation",
        ("AWS::KMS::Alias", f"alias/data-{run}"): "/TargetKeyId",
        ("AWS::SecretsManager::Secret", f"db-{run}"): "/Description",
        ("AWS::CloudWatch::Alarm", f"errors-{run}"): "/Threshold",
        ("AWS::ElasticLoadBalancingV2::TargetGroup", f"web-{run}"): "/HealthCheckPath",
    }
    for k, path in expect.items():
        assert k in got, (k, sorted(got))
        assert path in paths(got[k]), (k, sorted(paths(got[k])))
    assert "/Tags/owner" in paths(got[("AWS::SQS::Queue", f"jobs-{run}")])
    for k in (("AWS::IAM::ManagedPolicy", f"managed-{run}"), ("AWS::IAM::Policy", f"inline-{run}"),
              ("AWS::IAM::RolePolicy", "RoleInline")):
        assert any(p.startswith("/PolicyDocument/Statement/") for p in paths(got[k])), (k, paths(got[k]))
    assert len(r.drifts) == len(expect) + 3, report_json(r.drifts)
    assert secret not in report_json(r.drifts)

    done = await target.revert(env, desired, r.drifts)
    failed = [(d.key.kind, d.reason) for d in done if d.action is not Action.REVERTED]
    assert failed == [], failed
    after = await target.check(env, desired, inventory=frozenset())
    assert after.errors == ()
    assert after.drifts == (), report_json(after.drifts)
    # The secret's value was never read: no GetSecretValue call, and the policy does not allow one.
    seen = target.session("moto").seen_operations
    assert "secretsmanager:GetSecretValue" not in seen
    policy = aws_permissions.iam_policy({d.type for d in desired.aws}, enforce=True)
    allowed = {a for st in policy["Statement"] for a in st["Action"]}
    assert {aws_permissions.iam_action(op) for op in seen} - allowed == set()
    assert "secretsmanager:GetSecretValue" not in allowed


COVERAGE_TEMPLATE = """
Parameters:
  Run: {Type: String}
Resources:
  Named:
    Type: AWS::SNS::Topic
    Properties: {TopicName: !Sub "named-${Run}"}
  Generated:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !GetAtt Named.TopicName}
  Route:
    Type: AWS::EC2::Route
    Properties: {RouteTableId: rtb-1, DestinationCidrBlock: 0.0.0.0/0, GatewayId: igw-1}
  Deployed:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: deployed by CloudFormation, no GroupName
      SecurityGroupIngress: [{IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8}]
"""


@pytest.mark.anyio
async def test_coverage_names_each_resource_not_checked_and_finds_deployed_groups_by_tag(
        aws_env: Sandbox, target: AwsTarget) -> None:
    sb = aws_env
    run = "v" + uuid.uuid4().hex[:8]
    env = environment(run, unmanaged=False)
    sb.boto3_client("sns").create_topic(Name=f"named-{run}")
    # What CloudFormation makes of `Deployed`: a generated name, its stack and logical id in aws: tags.
    ec2 = sb.boto3_client("ec2")
    gid = ec2.create_security_group(GroupName=f"{env.name}-Deployed-{run.upper()}",
                                   Description="deployed by CloudFormation, no GroupName")["GroupId"]
    ec2.create_tags(Resources=[gid], Tags=[{"Key": "aws:cloudformation:stack-name", "Value": env.name},
                                           {"Key": "aws:cloudformation:logical-id", "Value": "Deployed"}])
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    desired = declarations(COVERAGE_TEMPLATE, {"Run": run})
    r = await target.check(env, desired, inventory=frozenset())
    assert r.errors == ()
    cov = r.checked_coverage
    assert cov is not None
    assert (cov.checked, cov.declared) == (2, 4)
    reasons = {n.key.name: n.reason for n in cov.not_checked}
    assert set(reasons) == {"Generated", "Route"}
    assert reasons["Route"] == "driftd has no adapter for AWS::EC2::Route"
    assert "QueueName" in reasons["Generated"]
    assert "driftd.io/physical-id" in reasons["Generated"]
    # The deployed group is found by its tags, and SSH opened to the world is reported on it.
    (d,) = r.drifts
    assert d.changes, report_json(r.drifts)
    assert (d.key.name, d.drift) == ("Deployed", DriftKind.MODIFIED)
    assert [(c.path, c.op) for c in d.changes] == [(f"/SecurityGroupIngress/{escape('tcp:22:0.0.0.0/0')}",
                                                    ChangeOp.ADD)], report_json(r.drifts)
    ec2.delete_security_group(GroupId=gid)


def test_every_table_call_is_a_real_operation_and_its_iam_action_is_derived() -> None:
    """A typo in a table would surface only when that call runs: check each against botocore's service model,
    and that the IAM action derived from it is the operation's own name (what `driftd permissions` prints)."""
    import botocore.session

    from driftd.targets.aws.actions import iam_action
    from driftd.targets.aws.spec import SpecAdapter, camel

    session = botocore.session.get_session()
    tables = [a for a in registry.adapters().values() if isinstance(a, SpecAdapter)]
    assert {a.type_name for a in tables} >= NEW_TYPES
    for a in tables:
        t = a.table
        model = session.get_service_model(t.service)
        ops = [*([t.list.operation] if t.list else []), *(r.operation for r in t.reads),
               *([t.list.lookup.operation] if t.list and t.list.lookup else []), *(w.operation for w in t.writes)]
        if t.tags is not None:
            ops += [t.tags.set_op, t.tags.unset_op, *([t.tags.read.operation] if t.tags.read else [])]
        if t.create is not None:
            ops += [t.create.operation, *(w.operation for w in t.create.then)]
        for op in ops:
            assert camel(op) in model.operation_names, (a.type_name, op)
            action = iam_action(f"{t.service}:{camel(op)}")
            assert action in a.read_permissions + a.revert_permissions, (a.type_name, action)


LISTENER_TEMPLATE = """
Resources:
  Http:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: LB_ARN
      Port: 443
      Protocol: HTTPS
      SslPolicy: ELBSecurityPolicy-TLS13-1-2-2021-06
      Certificates: [{CertificateArn: CERT_ARN}]
      DefaultActions: [{Type: forward, TargetGroupArn: TG_ARN}]
"""


@pytest.mark.anyio
async def test_listener_found_by_its_logical_id_tags_and_reverted(aws_env: Sandbox, target: AwsTarget) -> None:
    sb = aws_env
    run = "l" + uuid.uuid4().hex[:8]
    ec2, elb = sb.boto3_client("ec2"), sb.boto3_client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.61.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.61.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
        "Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
    lb = elb.create_load_balancer(Name=f"lb-{run}", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name=f"tg-{run}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0][
        "TargetGroupArn"]
    cert = sb.boto3_client("acm").request_certificate(DomainName=f"{run}.example.com")["CertificateArn"]
    text = LISTENER_TEMPLATE.replace("LB_ARN", lb).replace("TG_ARN", tg).replace("CERT_ARN", cert)
    desired = declarations(text, {})
    env = environment(run, unmanaged=False)

    first = await target.check(env, desired, inventory=frozenset())
    assert [(d.key.name, d.drift) for d in first.drifts] == [("Http", DriftKind.MISSING)]
    done = await target.revert(env, desired, first.drifts)
    assert [d.action for d in done] == [Action.REVERTED], done
    clean = await target.check(env, desired, inventory=frozenset())
    assert clean.drifts == (), report_json(clean.drifts)

    # An operator downgrades it to plain HTTP on port 80.
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb)["Listeners"]
    elb.modify_listener(ListenerArn=listener["ListenerArn"], Port=80, Protocol="HTTP")
    r = await target.check(env, desired, inventory=frozenset())
    (d,) = r.drifts
    assert {c.path: (c.expected, c.actual) for c in d.changes if c.path in ("/Port", "/Protocol")} == {
        "/Port": (443, 80), "/Protocol": ("HTTPS", "HTTP")}, report_json(r.drifts)
    done = await target.revert(env, desired, r.drifts)
    assert [x.action for x in done] == [Action.REVERTED], done
    after = await target.check(env, desired, inventory=frozenset())
    assert after.drifts == (), report_json(after.drifts)


@pytest.mark.anyio
async def test_unnamed_table_resources_deployed_by_cloudformation_are_found_by_their_tags(
        aws_env: Sandbox, target: AwsTarget) -> None:
    """A queue declared without QueueName, deployed by CloudFormation as <stack>-<LogicalId>-<random>: found by its
    aws:cloudformation tags, its drift reported, and not also listed as unmanaged."""
    sb = aws_env
    run = "q" + uuid.uuid4().hex[:8]
    env = environment(run)
    sqs = sb.boto3_client("sqs")
    url = sqs.create_queue(QueueName=f"{env.name}-Jobs-{run.upper()}", Attributes={"VisibilityTimeout": "5"},
                           tags={"driftd-test": run})["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={"aws:cloudformation:stack-name": env.name,
                                      "aws:cloudformation:logical-id": "Jobs"})
    desired = declarations("Resources:\n  Jobs:\n    Type: AWS::SQS::Queue\n    Properties: {VisibilityTimeout: 60}\n",
                           {})
    r = await target.check(env, desired, inventory=frozenset())
    assert r.errors == ()
    (d,) = r.drifts
    assert (d.key.name, d.drift) == ("Jobs", DriftKind.MODIFIED), report_json(r.drifts)
    assert [(c.path, c.expected, c.actual) for c in d.changes] == [("/VisibilityTimeout", 60, "5")]
    done = await target.revert(env, desired, r.drifts)
    assert [x.action for x in done] == [Action.REVERTED]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "60"}
    sqs.delete_queue(QueueUrl=url)
