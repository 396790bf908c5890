"""``driftd validate`` end to end: real repositories (sandbox git daemon, file://), every problem at once."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from driftd.cli import main
from tests.test_git_source import CM, Work

ROOT = Path(__file__).resolve().parent.parent


def config(tmp_path: Path, url: str, envs: list[tuple[str, str]], extra_repo: str = "") -> Path:
    text = f"""
[daemon]
state_dir = "{tmp_path / 'state'}"

[[clusters]]
name = "c"

[[aws_accounts]]
name = "a"
region = "eu-west-1"

[[repositories]]
name = "envs"
url = "{url}"
timeout = "10s"
{extra_repo}
"""
    for name, branch in envs:
        repo = "other" if name.startswith("other") else "envs"
        text += f"""
[[environments]]
name = "{name}"
repository = "{repo}"
branch = "{branch}"
  [environments.kubernetes]
  cluster = "c"
  namespace = "{name}"
  [environments.aws]
  account = "a"
  parameters = {{ Suffix = "{name}" }}
"""
    p = tmp_path / "driftd.toml"
    p.write_text(text)
    return p


AWS = """
Parameters:
  Suffix: {Type: String, Default: x}
Resources:
  B: {Type: AWS::S3::Bucket, Properties: {BucketName: !Sub "logs-${Suffix}"}}
  W: {Type: AWS::WAFv2::WebACL, Properties: {Name: w}}
"""


def test_validate_reports_every_problem_with_locations(sandbox, tmp_path, capsys):
    name = f"validate-{uuid.uuid4().hex[:6]}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    w = Work(tmp_path, url)
    good = {"kubernetes/app.yaml": CM.format(name="app", value="1"), "aws/t.yaml": AWS}
    w.commit("prod", good)
    w.git("checkout", "--quiet", "-B", "staging", "prod")
    w.commit("staging", {
        "kubernetes/broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
        "kubernetes/more/app.yaml": CM.format(name="app", value="2"),
        "aws/bad.yaml": "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: !Ref Nope}\n",
    })
    w.push("prod", "staging")
    unreachable = '\n[[repositories]]\nname = "other"\nurl = "git://127.0.0.1:1/none.git"\ntimeout = "5s"\n'
    cfg = config(tmp_path, url, [("prod", "prod"), ("staging", "staging"), ("gone", "deleted"),
                                 ("other-1", "main"), ("other-2", "main")], unreachable)

    assert main(["validate", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line and not line.startswith(("warning:", "{"))]
    problems = [line for line in lines if not line.startswith("driftd:")]
    st = f"environment staging (envs@staging {w.git('rev-parse', 'staging')[:12]}): "
    assert st + ("kubernetes/broken.yaml:5:1: invalid YAML: while parsing a flow sequence did not find "
                 "expected ',' or ']'") in problems
    assert st + ("kubernetes/more/app.yaml:1:1: ConfigMap staging/app is declared twice: "
                 "in kubernetes/more/app.yaml#0 and in kubernetes/app.yaml#0") in problems
    assert st + ("aws/bad.yaml:4:5: resource Q: Ref to 'Nope', which is neither a parameter nor a resource"
                 ) in problems
    assert any(p.startswith("environment gone (envs@deleted): repository envs") and
               "branch 'deleted' does not exist" in p for p in problems)
    # the unreachable repository is reported once, not once per environment
    assert sum("repository other (git://127.0.0.1:1/none.git): cannot fetch" in p for p in problems) == 1
    assert not any("environment prod " in p for p in problems)
    assert len(problems) == 5, problems
    assert f"driftd: {len(problems)} problem(s) found" in err
    # unknown CloudFormation types are warnings, not problems
    assert "warning: environment prod (envs@prod" in err
    assert "aws/t.yaml: W has type AWS::WAFv2::WebACL, which driftd does not check" in err


def test_validate_ok_on_a_file_remote(tmp_path, capsys):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    w = Work(tmp_path, str(remote))
    w.commit("prod", {"kubernetes/app.yaml": CM.format(name="app", value="1"), "aws/t.yaml": AWS})
    w.push("prod")
    cfg = config(tmp_path, f"file://{remote}", [("prod", "prod")])
    assert main(["validate", "-c", str(cfg)]) == 0
    out = capsys.readouterr()
    assert f"{cfg}: OK (1 environment(s))" in out.out
    assert not (tmp_path / "state" / "git").exists()  # validate never touches the daemon's cache


def test_example_config_validates_with_config_only(capsys):
    example = ROOT / "config" / "example.toml"
    assert main(["validate", "--config-only", "-c", str(example)]) == 0
    assert "OK (2 environment(s))" in capsys.readouterr().out
