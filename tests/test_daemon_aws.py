"""`driftd run` with AWS environments (moto from the sandbox, through ``endpoint_url``): an ingress rule
added with boto3, as an operator would in the console, is reverted and recorded in enforce mode, and only
recorded (and left) in alert mode."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProc, GitRepo, wait_for, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Web:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: NAME
      GroupDescription: web servers
      SecurityGroupIngress:
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8, Description: https}
      Tags:
        - {Key: team, Value: web}
"""
OPEN_SSH = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
MODES = ("enforce", "alert")


@dataclass
class Setup:
    sandbox: Sandbox
    daemon: DaemonProc
    groups: dict[str, str]  # env -> group id
    names: dict[str, str]  # env -> group name


def aws_setup(sandbox: Sandbox, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[GitRepo, dict[str, str],
                                                                                          dict[str, str]]:
    """One security group per mode, created in sync with Git through boto3; one branch per mode."""
    for k, v in sandbox.env().items():
        monkeypatch.setenv(k, v)
    run = uuid.uuid4().hex[:6]
    ec2 = sandbox.boto3_client("ec2")
    git = GitRepo(sandbox, f"aws-{run}.git", tmp / "work")
    names, groups = {}, {}
    for mode in MODES:
        names[mode] = f"web-{mode}-{run}"
        gid = ec2.create_security_group(GroupName=names[mode], Description="web servers")["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
             "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "https"}]}])
        ec2.create_tags(Resources=[gid], Tags=[{"Key": "team", "Value": "web"}])
        groups[mode] = gid
        git.commit({"aws/sg.yaml": TEMPLATE.replace("NAME", names[mode])}, branch=mode)
    return git, names, groups


def aws_envs() -> list[dict[str, object]]:
    return [{"name": mode, "mode": mode, "branch": mode, "interval": "2s",
             "aws": {"account": "sandbox", "path": "aws", "unmanaged": False}} for mode in MODES]


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def setup(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory,
          monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("daemon-aws")
    git, names, groups = aws_setup(sandbox, tmp, monkeypatch_module)
    state, port = tmp / "state", free_port()
    cfg = write_config(tmp / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port, envs=aws_envs(),
                       aws=True)
    d = DaemonProc(cfg, state, port, tmp / "driftd.log").start()
    try:
        envs = d.wait_checked(*MODES)
        assert all(envs[m]["status"] == "in_sync" for m in MODES), envs
        yield Setup(sandbox, d, groups, names)
    finally:
        assert d.stop() == 0, d.tail()


def ssh_open(s: Setup, mode: str) -> bool:
    g = s.sandbox.boto3_client("ec2").describe_security_groups(GroupIds=[s.groups[mode]])["SecurityGroups"][0]
    return any(p.get("FromPort") == 22 for p in g["IpPermissions"])


def test_enforce_reverts_an_added_ingress_rule_and_records_it(setup: Setup) -> None:
    b = setup.daemon.last_event_id()
    setup.sandbox.boto3_client("ec2").authorize_security_group_ingress(GroupId=setup.groups["enforce"],
                                                                      IpPermissions=OPEN_SSH)
    assert ssh_open(setup, "enforce")
    wait_for(lambda: not ssh_open(setup, "enforce"), 30, lambda: f"the rule revoked; log:\n{setup.daemon.tail()}")
    evs = wait_for(lambda: (e := setup.daemon.events_after(b, env="enforce"))
                   and "resolved" in [x["event"] for x in e] and e,
                   20, "detected, reverted, resolved")
    assert [e["event"] for e in evs][:2] == ["detected", "reverted"]
    assert evs[0]["target"] == "aws"
    assert evs[0]["kind"] == "AWS::EC2::SecurityGroup"
    assert evs[0]["name"] == setup.names["enforce"]
    assert "SecurityGroupIngress" in evs[0]["changes"]
    assert "0.0.0.0/0" in evs[0]["changes"]
    # The https rule Git declares is still there: only the extra rule was revoked.
    g = setup.sandbox.boto3_client("ec2").describe_security_groups(GroupIds=[setup.groups["enforce"]])
    assert [p["FromPort"] for p in g["SecurityGroups"][0]["IpPermissions"]] == [443]
    wait_for(lambda: setup.daemon.environments()["enforce"]["status"] == "in_sync", 15, "in sync again")


def test_alert_mode_records_the_rule_and_leaves_it(setup: Setup) -> None:
    b = setup.daemon.last_event_id()
    setup.sandbox.boto3_client("ec2").authorize_security_group_ingress(GroupId=setup.groups["alert"],
                                                                      IpPermissions=OPEN_SSH)
    evs = wait_for(lambda: setup.daemon.events_after(b, env="alert", event="detected"), 30,
                   lambda: f"a detected event; log:\n{setup.daemon.tail()}")
    assert evs[0]["name"] == setup.names["alert"]
    assert "0.0.0.0/0" in evs[0]["changes"]
    env = wait_for(lambda: (e := setup.daemon.environments()["alert"])["drifts"] and e, 10, "drift in the view")
    assert env["status"] == "drifted"
    assert env["drifts"][0]["kind"] == "AWS::EC2::SecurityGroup"
    assert env["drifts"][0]["action"] == "reported"
    time.sleep(5)  # two more polls
    assert ssh_open(setup, "alert")
    assert not setup.daemon.events_after(b, env="alert", event="reverted")
    assert len(setup.daemon.events_after(b, env="alert", event="detected")) == 1  # recorded once, not every poll
