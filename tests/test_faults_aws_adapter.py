"""An unexpected exception in one AWS adapter puts only its objects in error.

A proxy in front of the sandbox's moto answers SSM GetParameters with a well-formed answer of a shape
the adapter does not expect (a parameter without its Name): a KeyError inside the adapter. Before the
fix it escaped the target's task group and the whole environment failed; now the SSM parameter is
`unknown` (the environment reports error naming it), the security group of the same environment is
still reverted, the other environment keeps passing, and all recover when the answers are sane again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.daemon_support import DaemonProc, GitRepo, wait_for, write_config
from tests.fault_proxy import AwsFaultProxy
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SG = """\
  Web{n}:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupName: {name}
      GroupDescription: web servers
      SecurityGroupIngress:
        - {{IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8, Description: https}}
"""
PARAM = """\
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: {name}
      Type: String
      Value: "on"
"""
OPEN_SSH = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def _group(sandbox: Sandbox, name: str) -> str:
    ec2 = sandbox.boto3_client("ec2")
    gid = str(ec2.create_security_group(GroupName=name, Description="web servers")["GroupId"])
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "https"}]}])
    return gid


def _ssh_open(sandbox: Sandbox, gid: str) -> bool:
    g = sandbox.boto3_client("ec2").describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    return any(p.get("FromPort") == 22 for p in g["IpPermissions"])


def test_one_adapter_crashing_leaves_the_rest_passing(sandbox: Sandbox, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in sandbox.env().items():
        monkeypatch.setenv(k, v)
    run = uuid.uuid4().hex[:6]
    names = {e: f"fa-{e}-{run}" for e in ("a", "b")}
    gids = {e: _group(sandbox, n) for e, n in names.items()}
    param = f"/fa/{run}/setting"
    sandbox.boto3_client("ssm").put_parameter(Name=param, Type="String", Value="on")
    git = GitRepo(sandbox, f"faults-aws-{run}.git", tmp_path / "work")
    head = 'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n'
    git.commit({"a/stack.yaml": head + SG.format(n="A", name=names["a"]) + PARAM.format(name=param),
                "b/stack.yaml": head + SG.format(n="B", name=names["b"])})
    proxy = AwsFaultProxy(sandbox).start()
    envs = [{"name": e, "mode": "enforce", "interval": "2s",
             "aws": {"account": "sandbox", "path": e, "unmanaged": False}} for e in ("a", "b")]
    state, port = tmp_path / "state", free_port()
    cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port, envs=envs,
                       aws=True)
    cfg.write_text(cfg.read_text().replace(f'endpoint_url = "{sandbox.aws_endpoint}"', f'endpoint_url = "{proxy.url}"'))
    assert proxy.url in cfg.read_text()
    d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
    try:
        envs_seen = d.wait_checked("a", "b")
        assert envs_seen["a"]["status"] == "in_sync", envs_seen

        proxy.rewrite["AmazonSSM.GetParameters"] = b'{"Parameters": [{"Type": "String", "Value": "x"}]}'
        env = wait_for(lambda: (e := d.environments()["a"])["status"] == "error" and e, 30,
                       lambda: f"env a in error; {d.environments()}\n{d.tail()}")
        assert "AWS::SSM::Parameter adapter failed: KeyError" in env["error"], env
        assert [r for r in d.logs() if r.get("event") == "aws.adapter_crashed"], d.tail()
        # The security group of the same environment, and the other environment, are still enforced.
        ec2 = sandbox.boto3_client("ec2")
        for e in ("a", "b"):
            ec2.authorize_security_group_ingress(GroupId=gids[e], IpPermissions=OPEN_SSH)
        for e in ("a", "b"):
            wait_for(lambda e=e: not _ssh_open(sandbox, gids[e]), 30,  # type: ignore[misc]
                     lambda e=e: f"env {e}'s group reverted while SSM fails; log:\n{d.tail()}")  # type: ignore[misc]
        assert d.environments()["b"]["status"] == "in_sync"
        assert d.environments()["a"]["status"] == "error"
        assert not [x for x in d.environments()["a"]["drifts"] if x.get("drift") == "missing"]
        assert d.alive()

        proxy.rewrite.clear()
        wait_for(lambda: d.environments()["a"]["status"] == "in_sync", 30,
                 lambda: f"env a recovered; {d.environments()['a']}\n{d.tail()}")
    finally:
        rc = d.stop()
        proxy.stop()
    assert rc == 0, d.tail()
