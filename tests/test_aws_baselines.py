"""Baselines for what templates leave out (issue 15 §2), through the CLI as an operator would use it, against the
sandbox's moto: `driftd sync` records the baseline of undeclared security-relevant properties; an administrator
policy attached to the role, egress added to the group, a bucket policy and a public ACL, a layer and a function
URL on the function are then drift `undeclared` (baseline and live values) in `driftd check`; `driftd sync`
restores what is safe and says why it leaves the rest; `driftd baseline` re-takes it, in the audit trail."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import GitRepo, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port
from tests.test_aws_target import ACCOUNT_ID
from tests.test_cli_e2e import Cli

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

TEMPLATE = """\
Resources:
  AppRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: app-{run}
      AssumeRolePolicyDocument:
        Statement: [{{Effect: Allow, Principal: {{Service: lambda.amazonaws.com}}, Action: "sts:AssumeRole"}}]
  Web:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: web-{run}
      GroupDescription: web
      SecurityGroupIngress: [{{IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8}}]
  Data:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: data-{run}
      VersioningConfiguration: {{Status: Enabled}}
  Handler:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: handler-{run}
      Runtime: python3.12
      Handler: index.handler
      Role: !GetAtt AppRole.Arn
      Code: {{ZipFile: "def handler(e, c):\\n    return 1\\n"}}
"""


def _drifts(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["name"]): d for d in report["environments"][0]["drifts"]}


def _zip(source: bytes = b"x = 1\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", source)
    return buf.getvalue()


def test_undeclared_properties_baselined_reported_restored_retaken(sandbox: Sandbox, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sb = sandbox
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    run = "bl" + uuid.uuid4().hex[:8]
    iam, ec2, s3, lam = (sb.boto3_client(s) for s in ("iam", "ec2", "s3", "lambda"))
    # The function's role is !GetAtt (unresolvable without a stack): its live value is baselined instead.
    iam.create_role(RoleName=f"app-{run}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    # Deployed beforehand (a function needs its role, which the template names through !GetAtt).
    role_arn = f"arn:aws:iam::{ACCOUNT_ID}:role/app-{run}"
    lam.create_function(FunctionName=f"handler-{run}", Runtime="python3.12", Handler="index.handler", Role=role_arn,
                        Code={"ZipFile": _zip()})
    git = GitRepo(sb, f"bl-{run}.git", tmp_path / "work")
    git.commit({"aws/app.yaml": TEMPLATE.format(run=run)})
    envs: list[dict[str, Any]] = [{"name": "prod", "mode": "alert",
                                   "aws": {"account": "sandbox", "path": "aws", "unmanaged": False}}]
    cli = Cli(write_config(tmp_path / "driftd.toml", sb, repo_url=git.url, state_dir=tmp_path / "state",
                           port=free_port(), envs=envs, aws=True))

    code, report = cli.json("sync", "--env", "prod")
    assert code == 0, report["environments"][0]["drifts"]
    # What existed was baselined by that pass, and so was what the pass created (read again once created:
    # issue 23 §4), each once.
    code, hist = cli.json("history", "--env", "prod")
    everything = sorted([f"app-{run}", f"handler-{run}", f"web-{run}", f"data-{run}"])
    assert sorted(e["name"] for e in hist["events"] if e["event"] == "baseline") == everything
    code, report = cli.json("check", "--env", "prod")
    assert (code, report["environments"][0]["drifts"]) == (0, [])
    code, report = cli.json("sync", "--env", "prod")
    assert code == 0
    code, hist = cli.json("history", "--env", "prod")
    recorded = [e["name"] for e in hist["events"] if e["event"] == "baseline"]
    assert sorted(recorded) == everything, "a baseline is recorded once"
    code, report = cli.json("check", "--env", "prod")
    assert (code, report["environments"][0]["drifts"]) == (0, [])

    # Out of band, none of it in the template.
    admin = iam.create_policy(PolicyName=f"admin-{run}", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=f"app-{run}", PolicyArn=admin)
    gid = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"web-{run}"]}])[
        "SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_egress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 4444, "ToPort": 4444, "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}])
    s3.put_bucket_policy(Bucket=f"data-{run}", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::data-{run}/*"}]}))
    s3.put_bucket_acl(Bucket=f"data-{run}", ACL="public-read")
    layer = lam.publish_layer_version(LayerName=f"l-{run}", Content={"ZipFile": _zip()})["LayerVersionArn"]
    lam.update_function_configuration(FunctionName=f"handler-{run}", Layers=[layer])
    lam.create_function_url_config(FunctionName=f"handler-{run}", AuthType="NONE")
    before = lam.get_function_configuration(FunctionName=f"handler-{run}")["CodeSha256"]
    lam.update_function_code(FunctionName=f"handler-{run}", ZipFile=_zip(b"def handler(e, c):\n    return 'pwned'\n"))
    after = lam.get_function_configuration(FunctionName=f"handler-{run}")["CodeSha256"]
    assert before != after

    code, report = cli.json("check", "--env", "prod")
    assert code == 1
    got = _drifts(report)
    role = got[("AWS::IAM::Role", f"app-{run}")]
    assert role["drift"] == "undeclared"
    (c,) = role["changes"]
    assert (c["path"], c["expected"], c["actual"]) == ("/ManagedPolicyArns", [], [admin])
    web = got[("AWS::EC2::SecurityGroup", f"web-{run}")]
    assert web["drift"] == "undeclared"
    (c,) = web["changes"]
    assert c["path"] == "/SecurityGroupEgress"
    assert {r["CidrIp"] for r in c["actual"]} - {r["CidrIp"] for r in c["expected"]} == {"203.0.113.7/32"}
    data = got[("AWS::S3::Bucket", f"data-{run}")]
    assert {x["path"]: (x["expected"], x["actual"]) for x in data["changes"]}["/BucketPolicyPresent"] == (False, True)
    acl = {x["path"]: x for x in data["changes"]}["/AccessControl"]
    assert "group/AllUsers:READ" in acl["actual"]
    assert "group/AllUsers:READ" not in acl["expected"]
    fn = {x["path"]: x for x in got[("AWS::Lambda::Function", f"handler-{run}")]["changes"]}
    assert (fn["/Layers"]["expected"], fn["/Layers"]["actual"]) == ([], [layer])
    assert (fn["/FunctionUrl"]["expected"], fn["/FunctionUrl"]["actual"]) == (None, "NONE")
    assert (fn["/CodeSha256"]["expected"], fn["/CodeSha256"]["actual"]) == (before, after)
    assert len(got) == 4
    assert fn["/Layers"]["op"] == "not_equal"

    # sync restores the safe ones and says why it leaves the others.
    code, report = cli.json("sync", "--env", "prod")
    actions = {k: (d["action"], d.get("reason")) for k, d in _drifts(report).items()}
    assert actions[("AWS::IAM::Role", f"app-{run}")][0] == "reverted"
    assert actions[("AWS::EC2::SecurityGroup", f"web-{run}")][0] == "reverted"
    assert actions[("AWS::S3::Bucket", f"data-{run}")][0] == "revert_failed"
    assert "not restored automatically" in actions[("AWS::S3::Bucket", f"data-{run}")][1]
    assert actions[("AWS::Lambda::Function", f"handler-{run}")][0] == "revert_failed"
    assert iam.list_attached_role_policies(RoleName=f"app-{run}")["AttachedPolicies"] == []
    egress = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissionsEgress"]
    assert all(r.get("FromPort") != 4444 for r in egress)

    # The bucket policy, the ACL and the function URL were intended: re-take those baselines.
    code, out, err = cli("baseline", "--env", "prod", "--object", f"AWS::S3::Bucket/data-{run}",
                         "--object", f"handler-{run}")
    assert code == 0, err
    assert f"AWS::S3::Bucket data-{run}: baseline re-taken (/AccessControl, /BucketPolicyPresent)" in out
    code, report = cli.json("check", "--env", "prod")
    assert (code, report["environments"][0]["drifts"]) == (0, []), report
    code, hist = cli.json("history", "--env", "prod", "--object", f"AWS::S3::Bucket/data-{run}")
    retaken = [e for e in hist["events"] if e["event"] == "baseline" and e["reason"] == "baseline re-taken"]
    assert len(retaken) == 1
    assert retaken[0]["actor"].startswith("cli:")
    assert {c["path"] for c in retaken[0]["changes"]} == {"/AccessControl", "/BucketPolicyPresent"}
