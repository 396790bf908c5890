"""Issue 23 §4 as an operator met it: an observe environment declares IAM Roles (trust policy, one inline
policy, no ManagedPolicyArns); `driftd sync` creates them; then, with the AWS API, the trust policy is
widened, the inline policy widened, and a managed policy allowing ``Action: *`` attached; each change
alone on its own role, and all three on a fourth. `driftd check` must report every one of them.
Before, the attached policy went unreported: a resource `driftd sync` created had no baseline until a
later recording pass, and `driftd check` records none. Real moto server, the CLI as a subprocess."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_support import GitRepo, write_config
from tests.sandbox import Sandbox
from tests.sandbox.procs import free_port
from tests.test_cli_e2e import Cli

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

ROLE = """\
  {logical}:
    Type: AWS::IAM::Role
    Properties:
      RoleName: {name}
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement: [{{Effect: Allow, Principal: {{Service: lambda.amazonaws.com}}, Action: "sts:AssumeRole"}}]
      Policies:
        - PolicyName: read-logs
          PolicyDocument:
            Version: "2012-10-17"
            Statement: [{{Effect: Allow, Action: "logs:GetLogEvents", Resource: "*"}}]
"""

CASES = ("trust", "inline", "managed", "all")


def test_every_out_of_band_widening_of_a_role_sync_created_is_reported(sandbox: Sandbox, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sb = sandbox
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    run = "rb" + uuid.uuid4().hex[:8]
    names = {c: f"{c}-{run}" for c in CASES}
    template = "Resources:\n" + "".join(ROLE.format(logical=f"Role{c.title()}", name=n) for c, n in names.items())
    git = GitRepo(sb, f"rb-{run}.git", tmp_path / "work")
    git.commit({"aws/roles.yaml": template})
    envs: list[dict[str, Any]] = [{"name": "iam", "mode": "observe",
                                   "aws": {"account": "sandbox", "path": "aws", "unmanaged": False}}]
    cli = Cli(write_config(tmp_path / "driftd.toml", sb, repo_url=git.url, state_dir=tmp_path / "state",
                           port=free_port(), envs=envs, aws=True))
    code, report = cli.json("sync", "--env", "iam")
    assert code == 0, report["environments"][0]
    assert {d["name"] for d in report["environments"][0]["drifts"] if d["action"] == "reverted"} == set(names.values())
    code, report = cli.json("check", "--env", "iam")
    assert (code, report["environments"][0]["drifts"]) == (0, [])

    iam = sb.boto3_client("iam")
    admin = iam.create_policy(PolicyName=f"admin-{run}", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))["Policy"]["Arn"]
    for case, name in names.items():
        if case in ("trust", "all"):
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                        "Action": "sts:AssumeRole"}]}))
        if case in ("inline", "all"):
            iam.put_role_policy(RoleName=name, PolicyName="read-logs", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}))
        if case in ("managed", "all"):
            iam.attach_role_policy(RoleName=name, PolicyArn=admin)

    code, report = cli.json("check", "--env", "iam")
    assert code == 1
    drifts = {d["name"]: d for d in report["environments"][0]["drifts"]}
    assert set(drifts) == set(names.values()), drifts

    def paths(case: str) -> set[str]:
        return {c["path"].split("/")[1] for c in drifts[names[case]]["changes"]}

    assert paths("trust") == {"AssumeRolePolicyDocument"}
    assert paths("inline") == {"Policies"}
    assert paths("managed") == {"ManagedPolicyArns"}
    assert drifts[names["managed"]]["drift"] == "undeclared"
    assert paths("all") == {"AssumeRolePolicyDocument", "Policies", "ManagedPolicyArns"}
    assert drifts[names["all"]]["drift"] == "modified"  # one drift per resource: the undeclared change folded in
    attached = [c for c in drifts[names["all"]]["changes"] if c["path"].startswith("/ManagedPolicyArns")]
    assert admin in json.dumps(attached), attached
