"""The config schema through ``driftd validate``: malformed configs exit 2 naming the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli as tomllib

from driftd.cli import main
from driftd.config import load_config, parse_duration
from driftd.errors import ConfigErrors
from driftd.model import Mode

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[[clusters]]
name = "c"

[[aws_accounts]]
name = "a"
region = "eu-west-1"

[[repositories]]
name = "envs"
url = "https://git.example.com/envs.git"
"""

ENV = """
[[environments]]
name = "prod"
repository = "envs"
branch = "prod"
  [environments.kubernetes]
  cluster = "c"
"""

# (case, config text, key path expected in the message, message fragment)
MALFORMED = [
    ("invalid-toml", BASE + "[[environments]\n", "", "invalid TOML"),
    ("unknown-top-level-key", BASE + ENV + "[enviroments]\n", "enviroments",
     "unknown key; did you mean 'environments'?"),
    ("missing-branch", BASE + ENV.replace('branch = "prod"\n', ""), "environments[0].branch",
     "required key is missing (expected a string)"),
    ("unknown-repository", BASE + ENV.replace('repository = "envs"', 'repository = "nope"'),
     "environments[0].repository", "no [[repositories]] named 'nope' (defined: envs)"),
    ("bad-mode", BASE + ENV.replace('branch = "prod"', 'branch = "prod"\nmode = "fix"'), "environments[0].mode",
     "expected one of observe, alert, enforce, found 'fix'"),
    ("bad-duration", BASE + ENV.replace('branch = "prod"', 'branch = "prod"\ninterval = "5 minutes"'),
     "environments[0].interval", "expected a duration such as 30s"),
    ("bad-url", BASE.replace("https://git.example.com/envs.git", "ftp://x/envs.git") + ENV, "repositories[0].url",
     "expected an http(s)://, git://, ssh://, file:// URL or a local path"),
    ("path-escapes-branch", BASE + ENV + '  path = "../secrets"\n', "environments[0].kubernetes.path",
     "expected a directory inside the branch"),
    ("bad-region", BASE.replace('"eu-west-1"', '"europe"') + ENV, "aws_accounts[0].region",
     "expected an AWS region such as eu-west-1"),
    ("duplicate-environment", BASE + ENV + ENV, "environments[1]", "duplicate environment name 'prod'"),
    ("ignore-path-not-a-pointer", BASE + ENV + '  [[environments.ignore]]\n  paths = ["spec.replicas"]\n',
     "environments[0].ignore[0].paths[0]", "expected a JSON pointer starting with '/'"),
    ("missing-token-file", BASE + 'token_file = "/nonexistent/token"\n' + ENV, "repositories[0].token_file",
     "does not exist"),
    ("no-target", BASE + ENV.replace('  [environments.kubernetes]\n  cluster = "c"\n', ""), "environments[0]",
     "an environment needs a [environments.kubernetes] or [environments.aws] table"),
    ("fraction-out-of-range", BASE + ENV + "  prune_max_fraction = 2\n",
     "environments[0].kubernetes.prune_max_fraction", "expected a number between 0 and 1"),
    ("unknown-cluster", BASE + ENV.replace('cluster = "c"', 'cluster = "d"'), "environments[0].kubernetes.cluster",
     "no [[clusters]] named 'd'"),
    ("token-in-url", BASE.replace("https://git.example.com", "https://bot:s3cr3t@git.example.com") + ENV,
     "repositories[0].url", "the URL carries credentials"),
    ("wrong-type", BASE + ENV.replace('branch = "prod"', 'branch = "prod"\ndry_run = "yes"'),
     "environments[0].dry_run", "expected true or false, found a string 'yes'"),
]


@pytest.mark.parametrize(("case", "text", "key", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_configs_exit_2_naming_file_and_key(tmp_path, capsys, case, text, key, message):
    cfg = tmp_path / f"{case}.toml"
    cfg.write_text(text)
    assert main(["validate", "--config-only", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "driftd: invalid configuration:" in err
    where = f"{cfg}: {key}:" if key else f"{cfg}:"
    lines = [line.strip() for line in err.splitlines()]
    assert any(line.startswith(where) and message in line for line in lines), err


def test_all_problems_are_reported_at_once(tmp_path):
    cfg = tmp_path / "many.toml"
    text = BASE.replace('"eu-west-1"', '"europe"') + ENV.replace('repository = "envs"', 'repository = "nope"')
    cfg.write_text(text + '  path = "../x"\n')
    with pytest.raises(ConfigErrors) as ei:
        load_config(cfg)
    keys = sorted(e.key for e in ei.value.errors)
    assert keys == ["aws_accounts[0].region", "environments[0].kubernetes.path", "environments[0].repository"]


def test_not_utf8_and_unreadable(tmp_path, capsys):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes(b'[daemon]\nlisten = "caf\xe9"\n')
    assert main(["validate", "-c", str(cfg)]) == 2
    assert f"{cfg}: not UTF-8 at byte" in capsys.readouterr().err
    assert main(["validate", "-c", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_example_config_is_valid(capsys):
    example = ROOT / "config" / "example.toml"
    assert main(["validate", "--config-only", "-c", str(example)]) == 0
    assert f"{example}: OK (2 environment(s))" in capsys.readouterr().out
    cfg = load_config(example)
    prod = cfg.environment("prod")
    assert prod.mode is Mode.ALERT
    assert prod.kubernetes is not None
    assert prod.kubernetes.watch_namespaces == ("web",)
    assert cfg.repositories["envs"].poll_interval == 30.0


def test_local_repository_paths_are_resolved_against_the_config_dir(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASE.replace('"https://git.example.com/envs.git"', '"./repos/envs.git"') + ENV)
    assert load_config(cfg).repositories["envs"].url == str(tmp_path / "repos" / "envs.git")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1h30m", 5400.0), ("250ms", 0.25), ("7d", 604800.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_message():
    with pytest.raises(ValueError, match="expected a duration such as 30s, 5m, 1h30m or 7d, found '5 min'"):
        parse_duration("5 min")


def test_a_token_in_a_repository_url_is_refused_without_echoing_it(tmp_path, capsys):
    cfg = tmp_path / "leak.toml"
    cfg.write_text(BASE.replace("https://git.example.com", "ftp://bot:s3cr3t@git.example.com") + ENV)
    assert main(["validate", "--config-only", "-c", str(cfg)]) == 2
    out = capsys.readouterr()
    assert "the URL carries credentials" in out.err
    assert "s3cr3t" not in out.err + out.out


def test_keys_and_defaults_come_from_the_settings_dataclasses(tmp_path: Path) -> None:
    """A default is written once (the dataclass field): an environment that sets nothing gets the
    fields' defaults, and a new field is an accepted key without touching the parser."""
    import dataclasses

    from driftd.config import TABLES, EnvironmentSettings, defaults, toml_keys
    from driftd.model import Severity

    p = tmp_path / "driftd.toml"
    p.write_text(BASE + ENV)
    env = load_config(p).environments[0]
    d = defaults(EnvironmentSettings)
    assert (env.mode, env.interval, env.severity) == (d.mode, d.interval, d.severity)
    assert (d.mode, d.interval, d.severity) == (Mode.ALERT, 60.0, Severity.WARNING)
    assert isinstance(env.severity, Severity)
    for cls in TABLES:
        fields = {f.name for f in dataclasses.fields(cls) if "derived" not in f.metadata}
        assert fields <= toml_keys(cls), cls
    p.write_text(BASE + ENV.replace('branch = "prod"', 'branch = "prod"\nseverity = "critical"\nmode = "ENFORCE"'))
    with pytest.raises(ConfigErrors) as e:
        load_config(p)
    assert "environments[0].mode" in str(e.value)
    assert "expected one of observe, alert, enforce" in str(e.value)


# --- issue 14 §4: no credentials in any URL key ------------------------------------------------------------


@pytest.mark.parametrize(("where", "toml"), [
    ("repositories[0].url", '[[repositories]]\nname = "r"\nurl = "https://TOKEN123@git.example.com/envs.git"\n'),
    ("repositories[0].url", '[[repositories]]\nname = "r"\nurl = "ssh://git:TOKEN123@git.example.com/envs.git"\n'),
    ("alertmanager.urls[1]", '[alertmanager]\nurls = ["http://am:9093", "https://admin:TOKEN123@am:9093"]\n'),
    ("alertmanager.external_url", '[alertmanager]\nexternal_url = "https://TOKEN123@driftd.example.com"\n'),
    ("aws_accounts[0].endpoint_url",
     '[[aws_accounts]]\nname = "a"\nregion = "eu-west-1"\nendpoint_url = "https://k:TOKEN123@aws.local"\n'),
])
def test_userinfo_refused_in_every_url_key(tmp_path: Path, where: str, toml: str) -> None:
    from driftd.config import parse_config

    with pytest.raises(ConfigErrors) as ei:
        parse_config(tomllib.loads(toml), tmp_path / "driftd.toml")
    text = str(ei.value)
    assert where in text
    assert "carries credentials" in text
    assert "TOKEN123" not in text, "the error must not repeat the credential"


def test_ssh_user_without_password_is_fine(tmp_path: Path) -> None:
    from driftd.config import parse_config

    cfg = parse_config(tomllib.loads('[[repositories]]\nname = "r"\nurl = "ssh://git@git.example.com/envs.git"\n'),
                       tmp_path / "driftd.toml")
    assert cfg.repositories["r"].url == "ssh://git@git.example.com/envs.git"


def test_alertmanager_credentials_are_files(tmp_path: Path) -> None:
    from driftd.config import parse_config

    pw = tmp_path / "pw"
    pw.write_text("x")
    ok = parse_config(tomllib.loads(f'[alertmanager]\nurls = ["http://am:9093"]\nusername = "driftd"\n'
                                    f'password_file = "{pw}"\n'), tmp_path / "d.toml")
    assert (ok.alertmanager.username, ok.alertmanager.password_file) == ("driftd", pw)
    with pytest.raises(ConfigErrors, match="needs both username and password_file"):
        parse_config(tomllib.loads('[alertmanager]\nusername = "driftd"\n'), tmp_path / "d.toml")
    with pytest.raises(ConfigErrors, match="either bearer_token_file or username"):
        parse_config(tomllib.loads(f'[alertmanager]\nusername = "u"\npassword_file = "{pw}"\n'
                                   f'bearer_token_file = "{pw}"\n'), tmp_path / "d.toml")


# --- issue 14 §7: bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", '"0s"', '"0m"', "0.0"])
@pytest.mark.parametrize(("table", "key"), [
    ("alertmanager", "resend_interval"), ("alertmanager", "timeout"), ("daemon", "shutdown_timeout"),
    ("daemon", "retention"),
])
def test_durations_that_must_be_positive_refuse_zero_negative_nan_inf(tmp_path: Path, table: str, key: str,
                                                                     value: str) -> None:
    from driftd.config import parse_config

    with pytest.raises(ConfigErrors) as ei:
        parse_config(tomllib.loads(f"[{table}]\n{key} = {value}\n"), tmp_path / "d.toml")
    assert f"{table}.{key}" in str(ei.value)


@pytest.mark.parametrize("value", ["0", "nan", "inf", '"0s"'])
def test_repository_poll_interval_and_timeout_refuse_zero_nan_inf(tmp_path: Path, value: str) -> None:
    from driftd.config import parse_config

    for key in ("poll_interval", "timeout"):
        with pytest.raises(ConfigErrors, match=rf"repositories\[0\]\.{key}"):
            parse_config(tomllib.loads(f'[[repositories]]\nname = "r"\nurl = "https://h/r.git"\n{key} = {value}\n'),
                         tmp_path / "d.toml")


def test_error_grace_may_be_zero_but_not_negative_or_nan(tmp_path: Path) -> None:
    from driftd.config import parse_config

    assert parse_config(tomllib.loads("[alertmanager]\nerror_grace = 0\n"), tmp_path / "d.toml") \
        .alertmanager.error_grace == 0
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ConfigErrors, match="alertmanager.error_grace"):
            parse_config(tomllib.loads(f"[alertmanager]\nerror_grace = {bad}\n"), tmp_path / "d.toml")


@pytest.mark.parametrize("ns", ["Prod", "a/b", "../kube-system", "x" * 64, "-a", "a_b", ""])
def test_namespaces_are_validated(tmp_path: Path, ns: str) -> None:
    from driftd.config import parse_config

    base = ('[[clusters]]\nname = "c"\n[[repositories]]\nname = "r"\nurl = "https://h/r.git"\n'
            '[[environments]]\nname = "e"\nrepository = "r"\nbranch = "main"\n[environments.kubernetes]\n'
            'cluster = "c"\n')
    for extra, where in ((f'namespace = "{ns}"\n', "environments[0].kubernetes.namespace"),
                         (f'watch_namespaces = ["ok", "{ns}"]\n', "environments[0].kubernetes.watch_namespaces[1]")):
        if not ns and "namespace =" in extra:
            continue  # an empty namespace means the default one
        with pytest.raises(ConfigErrors) as ei:
            parse_config(tomllib.loads(base + extra), tmp_path / "d.toml")
        assert where in str(ei.value)
