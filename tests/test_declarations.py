"""CloudFormation-shaped declarations: intrinsics, conditions, identity, not-checked properties, errors (pure)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from driftd.model import TargetKind
from driftd.sources.declarations import Context, check_duplicates, parse_template

CORPUS = Path(__file__).parent / "data" / "corpus" / "cloudformation"
CTX = Context(region="eu-west-1", account_id="123456789012", stack_name="prod")


def one(text: str, ctx: Context = CTX, file: str = "aws/t.yaml"):
    r = parse_template(text.encode(), file, ctx)
    assert r.errors == (), r.errors
    return r


def by_id(r):
    return {d.logical_id: d for d in r.declarations}


def test_short_and_long_forms_and_pseudo_parameters():
    r = one("""
Parameters:
  Env: {Type: String, Default: staging}
  Cidrs: {Type: CommaDelimitedList, Default: "10.0.0.0/8, 192.168.0.0/16"}
Resources:
  P:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /${Env}/${AWS::Region}/${AWS::AccountId}/${AWS::StackName}
      Type: String
      Value: !Join [":", [!Ref Env, {"Ref": "AWS::Partition"}, {"Fn::Select": [1, !Ref Cidrs]}]]
      Description: {"Fn::Sub": ["${A}-${!Literal}-${AWS::URLSuffix}", {A: !Select [0, !Split [",", "x,y"]]}]}
      Tier: !Ref AWS::NoValue
      DataType: !Base64 hello
""")
    p = by_id(r)["P"]
    assert p.key == p.key.__class__(TargetKind.AWS, "AWS::SSM::Parameter", "/staging/eu-west-1/123456789012/prod",
                                    "eu-west-1")
    assert p.properties == {
        "Name": "/staging/eu-west-1/123456789012/prod",
        "Type": "String",
        "Value": "staging:aws:192.168.0.0/16",
        "Description": "x-${Literal}-amazonaws.com",
        "DataType": base64.b64encode(b"hello").decode(),
    }
    assert p.not_checked == ()


def test_environment_parameters_override_defaults():
    text = """
Parameters:
  Name: {Type: String, Default: dflt}
  Port: {Type: Number, Default: 80}
Resources:
  Q: {Type: AWS::SQS::Queue, Properties: {QueueName: !Ref Name, DelaySeconds: !Ref Port}}
"""
    assert by_id(one(text))["Q"].properties == {"QueueName": "dflt", "DelaySeconds": 80}
    r = one(text, Context(region="us-east-1", parameters={"Name": "over", "Port": "5"}))
    assert by_id(r)["Q"].properties == {"QueueName": "over", "DelaySeconds": 5}
    assert by_id(r)["Q"].key.name == "over"
    assert by_id(r)["Q"].key.namespace == "us-east-1"
    r = one(text, Context(region="us-east-1", parameters={"Nmae": "typo"}))
    assert any("environments.aws.parameters.Nmae matches no parameter" in w for w in r.warnings)


def test_unresolvable_properties_are_not_checked_never_drift():
    r = one("""
Parameters:
  Ami: {Type: "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", Default: /aws/service/ami}
  NoDefault: {Type: String}
Resources:
  SG:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: web
      GroupDescription: !Sub "for ${Other.Arn}"
      VpcId: !ImportValue shared-vpc
      SecurityGroupIngress:
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, SourceSecurityGroupId: !GetAtt Other.GroupId}
        - {IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: !Ref NoDefault}
      Tags:
        - {Key: ami, Value: !Ref Ami}
  Other:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: other
      SecurityGroupEgress: [!GetAtt X.Y, {CidrIp: 0.0.0.0/0}]
""")
    sg = by_id(r)["SG"]
    assert sg.properties == {
        "GroupName": "web",
        "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443},
                                 {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}],
        "Tags": [{"Key": "ami"}],
    }
    assert sg.not_checked == ("/GroupDescription", "/SecurityGroupIngress/0/SourceSecurityGroupId",
                              "/SecurityGroupIngress/1/CidrIp", "/Tags/0/Value", "/VpcId")
    other = by_id(r)["Other"]
    # a list with an unresolvable element is not checked as a whole; identity falls back to the logical id
    assert other.not_checked == ("/SecurityGroupEgress",)
    assert other.key.name == "Other"
    assert any("parameter NoDefault has no Default" in w for w in r.warnings)


def test_ref_to_a_resource_resolves_to_its_declared_name_only():
    r = one("""
Resources:
  B: {Type: AWS::S3::Bucket, Properties: {BucketName: logs-1}}
  Pol:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref B
      PolicyDocument: {Statement: [{Resource: !Sub "arn:${AWS::Partition}:s3:::${B}/*"}]}
  T: {Type: AWS::SNS::Topic, Properties: {TopicName: t}}
  Sub: {Type: AWS::SNS::Subscription, Properties: {TopicArn: !Ref T, Protocol: email}}
""")
    ids = by_id(r)
    assert ids["Pol"].key.name == "logs-1"
    assert ids["Pol"].properties["PolicyDocument"] == {"Statement": [{"Resource": "arn:aws:s3:::logs-1/*"}]}
    assert ids["Sub"].not_checked == ("/TopicArn",)  # a topic's Ref is its ARN: needs the stack


def test_conditions_and_fn_if():
    text = """
Parameters:
  Env: {Type: String, Default: prod}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: {"Fn::And": [{"Condition": "IsProd"}, !Equals [!Ref "AWS::Region", eu-west-1]]}
  Either: !Or [!Condition NotProd, !Equals [a, b]]
  ByAccount: !Equals [!Ref "AWS::AccountId", "123"]
Resources:
  Always:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: q
      DelaySeconds: !If [IsProd, 0, 30]
      VisibilityTimeout: !If [Both, 60, !Ref AWS::NoValue]
      MessageRetentionPeriod: !If [ByAccount, 1, 2]
  OnlyProd: {Type: AWS::SQS::Queue, Condition: IsProd, Properties: {QueueName: p}}
  OnlyOther: {Type: AWS::SQS::Queue, Condition: Either, Properties: {QueueName: o}}
"""
    r = one(text)
    assert set(by_id(r)) == {"Always", "OnlyProd"}
    assert by_id(r)["Always"].properties == {"QueueName": "q", "DelaySeconds": 0, "VisibilityTimeout": 60,
                                             "MessageRetentionPeriod": 2}
    r = one(text, Context(region="us-east-1", parameters={"Env": "dev"}))  # account unknown here
    assert set(by_id(r)) == {"Always", "OnlyOther"}
    a = by_id(r)["Always"]
    assert a.properties == {"QueueName": "q", "DelaySeconds": 30}
    assert a.not_checked == ("/MessageRetentionPeriod",)  # undecidable without the account id


def test_find_in_map_and_physical_id_metadata():
    r = one("""
Mappings:
  Sizes: {eu-west-1: {small: t3.small}}
Resources:
  LT:
    Type: AWS::EC2::LaunchTemplate
    Metadata: {driftd.io/physical-id: !Sub "lt-${AWS::Region}"}
    Properties:
      LaunchTemplateData: {InstanceType: !FindInMap [Sizes, !Ref "AWS::Region", small]}
""")
    lt = by_id(r)["LT"]
    assert lt.key.name == "lt-eu-west-1"
    assert lt.properties == {"LaunchTemplateData": {"InstanceType": "t3.small"}}
    assert lt.metadata["driftd.io/physical-id"] == {"Fn::Sub": "lt-${AWS::Region}"}


def test_unknown_types_are_warnings_and_kept():
    text = """
Resources:
  B: {Type: AWS::S3::Bucket, Properties: {BucketName: b}}
  C: {Type: Custom::Thing, Properties: {X: 1}}
"""
    r = one(text, Context(region="eu-west-1", supported_types=frozenset({"AWS::S3::Bucket"})))
    assert set(by_id(r)) == {"B", "C"}
    assert r.warnings == ("aws/t.yaml: C has type Custom::Thing, which driftd does not check",)
    assert one(text).warnings == ()  # no registry given: no judgement on types


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("Resources:\n  A:\n    Properties: {}\n", "resource A: Type is missing", 2),
        ("Resources:\n  A:\n    Type: [x]\n", "resource A: Type must be a string", 3),
        ("Resources:\n  A: {Type: AWS::S3::Bucket, Properties: {BucketName: !Ref Nope}}\n",
         "resource A: Ref to 'Nope', which is neither a parameter nor a resource", 2),
        ("Resources:\n  A:\n    Type: AWS::S3::Bucket\n    Properties:\n      X: !Join [a]\n",
         "resource A: Fn::Join expects [delimiter, [values]]", 4),
        ("Resources:\n  A: {Type: AWS::S3::Bucket, Condition: Nope}\n", "resource A: unknown condition 'Nope'", 2),
        ("Resources:\n  A:\n    Type: AWS::S3::Bucket\n    Properties: {X: !Bogus 1}\n",
         "resource A: unknown intrinsic function Fn::Bogus", 4),
    ],
)
def test_template_errors_have_locations_and_spare_other_resources(text, message, line):
    text += "  Good: {Type: AWS::S3::Bucket, Properties: {BucketName: good}}\n"
    r = parse_template(text.encode(), "aws/bad.yaml", CTX)
    (e,) = r.errors
    assert e.message == message
    assert (e.file, e.line) == ("aws/bad.yaml", line)
    assert [d.logical_id for d in r.declarations] == ["Good"]


def test_file_level_errors():
    (e,) = parse_template(b"Parameters: {}\n", "aws/x.yaml", CTX).errors
    assert (e.file, e.message) == ("aws/x.yaml", "Resources is missing")
    (e,) = parse_template(b"Resources:\n  A: {Type: [\n", "aws/y.yaml", CTX).errors
    assert e.file == "aws/y.yaml"
    assert e.line == 3
    assert e.message.startswith("invalid YAML")
    (e,) = parse_template(b'{"Resources": {"A": {"Type": "AWS::S3::Bucket",}}}', "aws/z.json", CTX).errors
    assert (e.file, e.line, e.column) == ("aws/z.json", 1, 48)


def test_duplicates_across_files_name_both():
    a = one("Resources:\n  A: {Type: AWS::S3::Bucket, Properties: {BucketName: same}}\n", file="aws/a.yaml")
    b = one("Resources:\n  B: {Type: AWS::S3::Bucket, Properties: {BucketName: same}}\n", file="aws/b.yaml")
    rs = one("Resources:\n"
             "  W: {Type: AWS::Route53::RecordSet, Properties: {Name: w.example.com., Type: A}}\n"
             "  X: {Type: AWS::Route53::RecordSet, Properties: {Name: w.example.com., Type: AAAA}}\n")
    (e,) = check_duplicates([*a.declarations, *b.declarations, *rs.declarations])
    assert e.file == "aws/b.yaml"
    assert e.message == "AWS::S3::Bucket same is declared twice: B here and A in aws/a.yaml"


def test_corpus_templates_load_with_not_checked_listed():
    ec2 = CORPUS / "aws-cloudformation-templates" / "EC2InstanceWithSecurityGroupSample.yaml"
    r = parse_template(ec2.read_bytes(), "aws/ec2.yaml", CTX)
    assert r.errors == ()
    ids = by_id(r)
    assert ids["EC2Instance"].properties == {"InstanceType": "t3.small"}
    # AMI from an SSM-typed parameter, the subnet and key from parameters without default, the group by GetAtt
    assert ids["EC2Instance"].not_checked == ("/ImageId", "/KeyName", "/SecurityGroupIds", "/SubnetId")
    sg = ids["InstanceSecurityGroup"]
    assert sg.properties["SecurityGroupIngress"] == [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "192.168.1.0/0"}]
    assert sg.not_checked == ()
    assert sg.metadata["guard"] == {"SuppressedRules": ["INCOMING_SSH_DISABLED"]}

    s3 = CORPUS / "aws-cloudformation-templates" / "s3-bucket-and-policy-for-caa-v1.yaml"
    r = parse_template(s3.read_bytes(), "aws/s3.yaml", CTX)  # BucketName, PublisherAccountID have no default
    assert r.errors == ()
    ids = by_id(r)
    assert ids["Bucket"].not_checked == ("/BucketName",)
    assert ids["Bucket"].key.name == "Bucket"  # identity unknown: logical id, and a warning says so
    assert any("Bucket (AWS::S3::Bucket): BucketName cannot be resolved" in w for w in r.warnings)
    assert ids["BucketPolicy"].not_checked == (
        "/Bucket", "/PolicyDocument/Statement/0/Principal/AWS", "/PolicyDocument/Statement/0/Resource",
        "/PolicyDocument/Statement/1/Principal/AWS", "/PolicyDocument/Statement/1/Resource",
        "/PolicyDocument/Statement/2/Resource")
    # with the parameters an environment would give, everything resolves
    ctx = Context(region="eu-west-1", parameters={"BucketName": "b-1", "PublisherAccountID": "111122223333"})
    r = parse_template(s3.read_bytes(), "aws/s3.yaml", ctx)
    ids = by_id(r)
    assert ids["Bucket"].key.name == "b-1"
    assert ids["BucketPolicy"].key.name == "b-1"
    assert ids["BucketPolicy"].not_checked == ()
    st = ids["BucketPolicy"].properties["PolicyDocument"]["Statement"]
    assert st[0]["Principal"] == {"AWS": ["arn:aws:iam::111122223333:root"]}
    assert st[2]["Resource"] == ["arn:aws:s3:::b-1", "arn:aws:s3:::b-1/*"]
    assert st[2]["Condition"] == {"Bool": {"aws:SecureTransport": False}}
