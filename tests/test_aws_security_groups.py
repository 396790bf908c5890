"""Security groups declared with a VpcId (issue 15 §1): a group driftd created, one an operator created beforehand
with the same name, and one in a non-default VPC (next to a same-named group in the default VPC) are each matched
to their live group, so an ingress rule opened to 0.0.0.0/0:22 and a declared rule revoked are reported as
``modified``, never hidden behind an ``unmanaged`` report of the declared group itself. Against the sandbox's moto;
out-of-band changes through boto3 as an operator would make them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from driftd.diff.aws_compare import escape
from driftd.model import Action, ChangeOp, DriftKind
from driftd.targets.aws.target import AwsTarget
from tests.daemon_support import GitRepo, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port
from tests.test_aws_breadth import aws_env, target  # noqa: F401 (fixtures)
from tests.test_aws_target import by_kind, declarations, environment, paths, report_json
from tests.test_cli_e2e import Cli

SG = "AWS::EC2::SecurityGroup"
OPEN_SSH = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
HTTP = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
ADDED = f"/SecurityGroupIngress/{escape('tcp:22:0.0.0.0/0')}"
REVOKED = f"/SecurityGroupIngress/{escape('tcp:80:10.0.0.0/8')}"

# The template: GroupName, GroupDescription, VpcId through a parameter, two ingress rules, a tag.
GROUP = """
  {logical}:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: {name}
      GroupDescription: web servers
      VpcId: !Ref {param}
      SecurityGroupIngress:
        - {{IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8, Description: https}}
        - {{IpProtocol: tcp, FromPort: 80, ToPort: 80, CidrIp: 10.0.0.0/8}}
      Tags:
        - {{Key: team, Value: web}}
        - {{Key: driftd-test, Value: {run}}}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def default_vpc(sb: Sandbox) -> str:
    vpcs = sb.boto3_client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    return str(vpcs[0]["VpcId"])


def group_id(sb: Sandbox, name: str, vpc: str) -> str:
    groups = sb.boto3_client("ec2").describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    assert len(groups) == 1, groups
    return str(groups[0]["GroupId"])


def drift_out_of_band(sb: Sandbox, gid: str) -> None:
    """What the issue says goes unreported: SSH opened to the world, a declared rule revoked."""
    ec2 = sb.boto3_client("ec2")
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[OPEN_SSH])
    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[HTTP])


@pytest.mark.anyio
async def test_groups_with_vpc_id_are_matched_and_their_rule_changes_reported(aws_env: Sandbox,  # noqa: F811
                                                                              target: AwsTarget) -> None:  # noqa: F811
    sb = aws_env
    ec2 = sb.boto3_client("ec2")
    run = "sg" + uuid.uuid4().hex[:8]
    dvpc = default_vpc(sb)
    other = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    names = {"created": f"created-{run}", "existing": f"existing-{run}", "other": f"other-{run}"}
    scope = [{"ResourceType": "security-group", "Tags": [{"Key": "driftd-test", "Value": run}]}]
    # Created beforehand by an operator, exactly as declared (same name, same rules, same tags).
    pre = ec2.create_security_group(GroupName=names["existing"], Description="web servers", VpcId=dvpc,
                                    TagSpecifications=[{"ResourceType": "security-group", "Tags": [
                                        {"Key": "team", "Value": "web"}, {"Key": "driftd-test", "Value": run}]}])
    ec2.authorize_security_group_ingress(GroupId=pre["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "https"}]}, HTTP])
    # A same-named group in the default VPC, in scope, that nothing declares: the declared one is in `other`.
    decoy = ec2.create_security_group(GroupName=names["other"], Description="decoy", VpcId=dvpc,
                                      TagSpecifications=scope)["GroupId"]

    template = "Parameters:\n  VpcId: {Type: AWS::EC2::VPC::Id}\n  OtherVpcId: {Type: AWS::EC2::VPC::Id}\n" \
               "Resources:" + "".join(
                   GROUP.format(logical=logical, name=names[which], param=param, run=run)
                   for logical, which, param in (("Created", "created", "VpcId"), ("Existing", "existing", "VpcId"),
                                                 ("Other", "other", "OtherVpcId")))
    desired = declarations(template, {"VpcId": dvpc, "OtherVpcId": other})
    env = environment(run)

    first = await target.check(env, desired, inventory=frozenset())
    assert first.errors == ()
    got = {(d.key.name, d.drift) for d in first.drifts}
    # The pre-existing group is found (no drift); the other two are missing; the decoy is unmanaged under its
    # VPC-qualified name, never under the declared group's key.
    assert got == {(names["created"], DriftKind.MISSING), (names["other"], DriftKind.MISSING),
                   (f"{dvpc}/{names['other']}", DriftKind.UNMANAGED)}, report_json(first.drifts)
    done = await target.revert(env, desired, first.drifts)
    assert {d.key.name: d.action for d in done} == {names["created"]: Action.REVERTED,
                                                    names["other"]: Action.REVERTED,
                                                    f"{dvpc}/{names['other']}": Action.SKIPPED}
    gids = {"created": group_id(sb, names["created"], dvpc), "existing": pre["GroupId"],
            "other": group_id(sb, names["other"], other)}

    clean = await target.check(env, desired, inventory=frozenset())
    assert clean.errors == ()
    assert [(d.key.name, d.drift) for d in clean.drifts] == [(f"{dvpc}/{names['other']}", DriftKind.UNMANAGED)]
    assert clean.coverage[SG] == (3, 4)

    for gid in gids.values():
        drift_out_of_band(sb, gid)
    r = await target.check(env, desired, inventory=frozenset())
    assert r.errors == ()
    found = by_kind(r.drifts)
    assert len(r.drifts) == 4, report_json(r.drifts)
    for which, name in names.items():
        d = found[(SG, name)]
        assert d.drift is DriftKind.MODIFIED, (which, report_json(r.drifts))
        p = paths(d)
        assert set(p) == {ADDED, REVOKED}, (which, sorted(p))
        assert (p[ADDED].op, p[ADDED].actual["CidrIp"]) == (ChangeOp.ADD, "0.0.0.0/0")
        assert (p[REVOKED].op, p[REVOKED].expected["FromPort"]) == (ChangeOp.REMOVE, 80)
    assert found[(SG, f"{dvpc}/{names['other']}")].drift is DriftKind.UNMANAGED

    # Revert touches exactly the declared group in each VPC: the decoy keeps its (empty) rules.
    done = await target.revert(env, desired, r.drifts)
    assert sorted(str(d.action) for d in done) == ["reverted", "reverted", "reverted", "skipped"]
    for gid in gids.values():
        perms = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]["IpPermissions"]
        assert sorted(p["FromPort"] for p in perms) == [80, 443]
    assert ec2.describe_security_groups(GroupIds=[decoy])["SecurityGroups"][0]["IpPermissions"] == []
    for gid in (*gids.values(), decoy):
        ec2.delete_security_group(GroupId=gid)


CLI_TEMPLATE = """\
Parameters:
  VpcId: {{Type: String, Default: {vpc}}}
Resources:""" + GROUP


@pytest.mark.slow
def test_cli_observe_env_sync_then_check_reports_the_group_modified(aws_env: Sandbox, tmp_path: Path) -> None:  # noqa: F811
    """The issue's steps, as a new user would take them: an observe environment, `driftd sync`, `driftd check`."""
    sb = aws_env
    run = "cli" + uuid.uuid4().hex[:8]
    name = f"web-{run}"
    vpc = default_vpc(sb)
    git = GitRepo(sb, f"sg-{run}.git", tmp_path / "work")
    git.commit({"aws/sg.yaml": CLI_TEMPLATE.format(vpc=vpc, logical="Web", name=name, param="VpcId", run=run)})
    envs: list[dict[str, Any]] = [{"name": "obs", "mode": "observe",
                                   "aws": {"account": "sandbox", "path": "aws", "tag_filter": {"driftd-test": run}}}]
    cli = Cli(write_config(tmp_path / "driftd.toml", sb, repo_url=git.url, state_dir=tmp_path / "state",
                           port=free_port(), envs=envs, aws=True))

    code, report = cli.json("sync", "--env", "obs")
    assert code == 0, report
    gid = group_id(sb, name, vpc)
    code, report = cli.json("check", "--env", "obs")
    assert (code, report["environments"][0]["status"], report["environments"][0]["drifts"]) == (0, "in_sync", [])
    assert report["environments"][0]["coverage"] == {"checked": 1, "declared": 1, "ratio": 1.0, "not_checked": []}

    drift_out_of_band(sb, gid)
    code, report = cli.json("check", "--env", "obs")
    assert code == 1
    (d,) = report["environments"][0]["drifts"]
    assert (d["kind"], d["name"], d["drift"], d["action"]) == (SG, name, "modified", "reported")
    assert {(c["path"], c["op"]) for c in d["changes"]} == {(ADDED, "add"), (REVOKED, "remove")}
    sb.boto3_client("ec2").delete_security_group(GroupId=gid)
