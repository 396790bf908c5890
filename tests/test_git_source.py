"""The repository cache and the desired-state loader against real Git servers (sandbox git daemon, file://)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import anyio
import pytest

from driftd.config import AwsEnvSettings, EnvironmentSettings, KubernetesEnvSettings, RepositorySettings
from driftd.errors import SourceError
from driftd.sources import git as gitmod
from driftd.sources.git import RepositoryCache, cache_dir_name, redact_url
from driftd.sources.loader import DesiredStateLoader
from driftd.sources.yamlsafe import Limits
from tests.sandbox import start_git, stop_git

CORPUS = Path(__file__).parent / "data" / "corpus"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{value}\"\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Work:
    """A working clone driven with the git CLI, the way a person pushes to the repository."""

    def __init__(self, root: Path, remote: str) -> None:
        self.dir = root / f"work-{uuid.uuid4().hex[:6]}"
        self.remote = remote
        self.git("init", "--quiet", "--initial-branch=main", str(self.dir), cwd=root)
        self.git("remote", "add", "origin", remote)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        out = subprocess.run(["git", *args], cwd=cwd or self.dir, env=env, capture_output=True, text=True)
        if out.returncode:
            raise AssertionError(f"git {shlex.join(args)}: {out.stderr}")
        return out.stdout.strip()

    def write(self, files: dict[str, str | bytes]) -> None:
        for path, data in files.items():
            p = self.dir / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data.encode() if isinstance(data, str) else data)

    def commit(self, branch: str, files: dict[str, str | bytes], message: str = "change") -> str:
        self.git("checkout", "--quiet", "-B", branch)
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, *refspecs: str, force: bool = False) -> None:
        self.git("push", "--quiet", *(["--force"] if force else []), "origin", *refspecs)


def env(name: str, branch: str, *, repo: str = "envs", path: str = "kubernetes", namespace: str = "apps",
        aws_path: str | None = None, parameters: dict[str, str] | None = None) -> EnvironmentSettings:
    return EnvironmentSettings(
        name=name, repository=repo, branch=branch,
        kubernetes=KubernetesEnvSettings(cluster="c", path=path, namespace=namespace),
        aws=AwsEnvSettings(account="a", path=aws_path, parameters=parameters or {}) if aws_path else None,
    )


def new_cache(url: str, tmp_path: Path, **kw) -> RepositoryCache:
    timeout = kw.pop("timeout", 30.0)
    return RepositoryCache(RepositorySettings(name="envs", url=url, timeout=timeout), tmp_path / "state", **kw)


def local_refs(cache: RepositoryCache) -> dict[str, str]:
    out = subprocess.run(["git", "--git-dir", str(cache.path), "for-each-ref", "--format=%(refname) %(objectname)"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines())


@pytest.fixture
def count_connections(monkeypatch):
    """Counts connections dulwich opens to a git:// server."""
    calls: list[bytes] = []
    orig = gitmod._TimeoutTCPGitClient._connect

    def counting(self, cmd, path, protocol_version=None):
        calls.append(cmd)
        return orig(self, cmd, path, protocol_version)

    monkeypatch.setattr(gitmod._TimeoutTCPGitClient, "_connect", counting)
    return calls


# --- against the sandbox's git daemon ------------------------------------------------------------------


@pytest.mark.anyio
async def test_many_branches_in_one_round_trip_then_incremental(sandbox, tmp_path, count_connections):
    name = f"many-{uuid.uuid4().hex[:6]}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    w = Work(tmp_path, url)
    base = {f"kubernetes/cm-{i:03d}.yaml": CM.format(name=f"cm-{i:03d}", value="1") for i in range(40)}
    w.commit("main", base)
    branches = [f"env-{i:02d}" for i in range(30)]
    for b in branches:
        w.commit(b, {"kubernetes/own.yaml": CM.format(name="own", value=b)})
    w.push(*branches, "main")

    cache = new_cache(url, tmp_path)
    r = await cache.fetch()
    assert count_connections == [b"upload-pack"]  # every branch in one connection
    assert set(r.heads) == {*branches, "main"}
    assert set(r.changed) == {*branches, "main"}
    assert r.bytes_received > 0
    assert {k.removeprefix("refs/heads/"): v for k, v in local_refs(cache).items()} == r.heads

    loader = DesiredStateLoader({"envs": cache})
    envs = [env(b, b) for b in branches]
    results = [await loader.load(e) for e in envs]
    assert all(x.ok for x in results), [x.error for x in results if not x.ok]
    assert results[0].state is not None
    assert len(results[0].state.kubernetes) == 41
    assert loader.parse_count == 40 + 30  # shared files parsed once for all branches (blob cache)

    # a no-op poll: one connection, nothing received, nothing changed, nothing parsed
    count_connections.clear()
    r2 = await cache.fetch()
    assert count_connections == [b"upload-pack"]
    assert (r2.changed, r2.removed, r2.bytes_received) == ((), (), 0)
    again = await loader.load(envs[0])
    assert again.state is results[0].state
    assert not again.parsed

    # one new commit on one branch: only it changes, only its changed file is parsed
    sha = w.commit("env-07", {"kubernetes/cm-003.yaml": CM.format(name="cm-003", value="2")})
    w.push("env-07")
    before = loader.parse_count
    r3 = await cache.fetch()
    assert r3.changed == ("env-07",)
    assert r3.heads["env-07"] == sha
    assert 0 < r3.bytes_received < r.bytes_received
    res = await loader.load(envs[7])
    assert res.ok
    assert res.parsed
    assert res.revision == sha
    assert loader.parse_count == before + 1
    cm = next(o for o in res.state.kubernetes if o.key.name == "cm-003")
    assert cm.body["data"] == {"v": "2"}
    untouched = await loader.load(envs[8])
    assert untouched.state is results[8].state
    assert not untouched.parsed


@pytest.mark.anyio
async def test_force_push_and_deleted_branch(sandbox, tmp_path):
    name = f"rewrite-{uuid.uuid4().hex[:6]}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    w = Work(tmp_path, url)
    w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="old")})
    first = w.commit("prod", {"kubernetes/b.yaml": CM.format(name="b", value="old")})
    w.commit("staging", {"kubernetes/s.yaml": CM.format(name="s", value="1")})
    w.push("prod", "staging")
    cache = new_cache(url, tmp_path)
    loader = DesiredStateLoader({"envs": cache})
    await cache.fetch()
    prod, staging = env("prod", "prod"), env("staging", "staging")
    assert (await loader.load(prod)).revision == first

    # history rewritten: the new head is not a descendant of the old one
    w.git("checkout", "--quiet", "prod")
    w.git("reset", "--quiet", "--hard", "HEAD~1")
    rewritten = w.commit("prod", {"kubernetes/c.yaml": CM.format(name="c", value="new")}, "rewritten")
    w.push("prod", force=True)
    r = await cache.fetch()
    assert r.changed == ("prod",)
    assert local_refs(cache)["refs/heads/prod"] == rewritten
    res = await loader.load(prod)
    assert res.ok
    assert res.revision == rewritten
    assert sorted(o.key.name for o in res.state.kubernetes) == ["a", "c"]

    # the staging branch is deleted: its environment is in error, not "everything removed"
    good = (await loader.load(staging)).revision
    w.git("push", "--quiet", "origin", "--delete", "staging")
    r = await cache.fetch()
    assert r.removed == ("staging",)
    assert "refs/heads/staging" not in local_refs(cache)
    res = await loader.load(staging)
    assert not res.ok
    assert res.state is None
    assert "branch 'staging' does not exist" in res.error
    assert res.last_good_revision == good
    assert (await loader.load(prod)).ok  # the other environment of the repository still loads


@pytest.mark.anyio
async def test_server_down_then_back(sandbox_faults, tmp_path):
    sandbox = sandbox_faults
    name = f"down-{uuid.uuid4().hex[:6]}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    w = Work(tmp_path, url)
    sha = w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="1")})
    w.push("prod")
    cache = new_cache(url, tmp_path, timeout=10.0)
    loader = DesiredStateLoader({"envs": cache})
    await cache.fetch()
    assert (await loader.load(env("prod", "prod"))).ok
    stop_git(sandbox)
    try:
        with pytest.raises(SourceError, match="cannot fetch: connection refused") as ei:
            await cache.fetch()
        assert ei.value.retryable
        assert ei.value.subject == f"repository envs ({url})"
        res = await loader.load(env("prod", "prod"))
        assert not res.ok
        assert "connection refused" in res.error
        assert res.last_good_revision == sha
    finally:
        start_git(sandbox)
    sha2 = w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="2")})
    w.push("prod")
    r = await cache.fetch()
    assert r.heads["prod"] == sha2
    assert cache.last_error is None
    res = await loader.load(env("prod", "prod"))
    assert res.ok
    assert res.revision == sha2


@pytest.mark.anyio
async def test_loader_reads_the_corpus_from_the_sandbox(sandbox, tmp_path):
    name = f"corpus-{uuid.uuid4().hex[:6]}.git"
    sandbox.new_bare_repo(name)
    url = sandbox.git_repo_url(name)
    w = Work(tmp_path, url)
    files = {f"kubernetes/{p.relative_to(CORPUS / 'kubernetes')}": p.read_bytes()
             for p in (CORPUS / "kubernetes").rglob("*") if p.is_file()}
    files |= {f"aws/{p.name}": p.read_bytes() for p in (CORPUS / "cloudformation").rglob("*.yaml")}
    w.commit("prod", files)
    w.push("prod")
    cache = new_cache(url, tmp_path)
    await cache.fetch()
    loader = DesiredStateLoader({"envs": cache}, supported_aws_types=frozenset({"AWS::S3::Bucket"}))
    e = env("prod", "prod", aws_path="aws", parameters={"BucketName": "corpus-b", "PublisherAccountID": "1"})
    res = await loader.load(e, account_id="123456789012", region="eu-west-1")
    assert res.ok, res.problems
    assert len(res.state.kubernetes) == 17
    decls = {d.logical_id: d for d in res.state.aws}
    assert set(decls) == {"EC2Instance", "InstanceSecurityGroup", "Bucket", "BucketPolicy"}
    assert decls["EC2Instance"].not_checked == ("/ImageId", "/KeyName", "/SecurityGroupIds", "/SubnetId")
    assert decls["Bucket"].key.name == "corpus-b"
    assert any("EC2Instance has type AWS::EC2::Instance, which driftd does not check" in x
               for x in res.state.warnings)


# --- file:// and local paths --------------------------------------------------------------------------


def bare(tmp_path: Path) -> Path:
    p = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(p)], check=True)
    return p


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["file://", ""])
async def test_file_url_and_local_path(tmp_path, scheme):
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    a = w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="1")})
    w.push("prod")
    cache = new_cache(f"{scheme}{remote}", tmp_path)
    r = await cache.fetch()
    assert r.heads == {"prod": a}
    b = w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="2")})
    w.push("prod")
    r = await cache.fetch()
    assert r.changed == ("prod",)
    assert cache.resolve("prod") == b
    snap = await cache.read_tree(b, "kubernetes")
    assert [f.path for f in snap.files] == ["kubernetes/a.yaml"]
    assert b'"2"' in snap.files[0].data


@pytest.mark.anyio
async def test_unchanged_tree_costs_no_parsing(tmp_path):
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="1"), "README.md": "x"})
    w.push("prod")
    cache = new_cache(str(remote), tmp_path)
    loader = DesiredStateLoader({"envs": cache})
    await cache.fetch()
    first = await loader.load(env("prod", "prod"))
    n = loader.parse_count
    sha = w.commit("prod", {"README.md": "docs only"})
    w.push("prod")
    await cache.fetch()
    res = await loader.load(env("prod", "prod"))
    assert res.ok
    assert res.revision == sha
    assert not res.parsed
    assert loader.parse_count == n
    assert res.state.kubernetes is first.state.kubernetes


@pytest.mark.anyio
async def test_only_configured_branches_are_fetched(tmp_path):
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    w.commit("prod", {"kubernetes/a.yaml": CM.format(name="a", value="1")})
    w.commit("feature-x", {"kubernetes/big.yaml": CM.format(name="big", value="x" * 1000)})
    w.push("prod", "feature-x")
    cache = new_cache(str(remote), tmp_path, branches={"prod"})
    r = await cache.fetch()
    assert set(r.heads) == {"prod"}
    with pytest.raises(SourceError, match="branch 'feature-x' does not exist"):
        cache.resolve("feature-x")


# --- bad inputs: each puts its environment in error with a location; the others still load -----------------

LIMITS = Limits(max_file_bytes=2048, max_documents=5, max_nodes=5000)

BAD_INPUTS = {
    "invalid-yaml": ({"kubernetes/bad.yaml": "a: [1,\n"}, "kubernetes/bad.yaml:2:1", "invalid YAML"),
    "missing-name": ({"kubernetes/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
                     "kubernetes/bad.yaml:1:1", "ConfigMap: metadata.name is missing"),
    "duplicate": ({"kubernetes/x/dup.yaml": CM.format(name="good", value="1")}, "kubernetes/x/dup.yaml:1:1",
                  "ConfigMap apps/good is declared twice: in kubernetes/x/dup.yaml#0 and in kubernetes/good.yaml#0"),
    "non-utf8": ({"kubernetes/bad.yaml": b"apiVersion: v1\nkind: \xff\n"}, "kubernetes/bad.yaml:2:7", "not UTF-8"),
    "symlink": ({}, "kubernetes/link.yaml", "symbolic links are refused"),
    "too-big": ({"kubernetes/big.yaml": "# " + "x" * 3000 + "\n"}, "kubernetes/big.yaml",
                "file is 3,003 bytes, over the limit of 2,048"),
    "bomb": ({"kubernetes/bomb.yaml": "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
              "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"},
             "kubernetes/bomb.yaml:4:4", "alias-expansion bomb"),
    "many-documents": ({"kubernetes/many.yaml": "---\n{}\n" * 6}, "kubernetes/many.yaml:12:1",
                       "more than 5 documents in one file"),
    "unknown-cfn-type-is-only-a-warning": ({}, None, None),
    "cfn-error": ({"aws/t.yaml": "Resources:\n  A:\n    Type: AWS::S3::Bucket\n    Properties: {B: !Ref Nope}\n"},
                  "aws/t.yaml:4:5", "resource A: Ref to 'Nope', which is neither a parameter nor a resource"),
    "missing-path": ({}, "kubernetes", "directory does not exist"),
}


@pytest.mark.anyio
async def test_bad_inputs_have_locations_and_spare_other_environments(tmp_path):
    remote = bare(tmp_path)
    w = Work(tmp_path, str(remote))
    good_files = {"kubernetes/good.yaml": CM.format(name="good", value="1"),
                  "aws/t.yaml": "Resources:\n  B: {Type: AWS::S3::Bucket, Properties: {BucketName: b}}\n"
                                "  C: {Type: Custom::Thing, Properties: {X: 1}}\n"}
    w.commit("good", good_files)
    branches = ["good"]
    for name, (files, _, _) in BAD_INPUTS.items():
        w.git("checkout", "--quiet", "-B", name, "good")
        if name == "symlink":
            os.symlink("good.yaml", w.dir / "kubernetes" / "link.yaml")
        if name == "missing-path":
            w.git("rm", "--quiet", "-r", "kubernetes")
        w.commit(name, files)
        branches.append(name)
    w.push(*branches)
    cache = new_cache(str(remote), tmp_path, limits=LIMITS)
    loader = DesiredStateLoader({"envs": cache}, limits=LIMITS,
                                supported_aws_types=frozenset({"AWS::S3::Bucket"}))
    await cache.fetch()
    results = {b: await loader.load(env(b, b, aws_path="aws"), region="eu-west-1") for b in branches}
    good = results.pop("good")
    assert good.ok
    assert good.state.warnings == ("aws/t.yaml: C has type Custom::Thing, which driftd does not check",)
    for name, (_, where, message) in BAD_INPUTS.items():
        res = results[name]
        if where is None:
            assert res.ok, (name, res.error)
            assert any("Custom::Thing" in x for x in res.state.warnings)
            continue
        assert not res.ok, name
        assert res.state is None, name
        (p,) = res.problems
        assert p.subject == where, (name, str(p))
        assert message in p.message, (name, str(p))
        assert str(p) in res.error
        # a branch that never loaded has no last good revision
        assert res.last_good_revision is None
    # and after all that, the good environment is still served (from cache)
    again = await loader.load(env("good", "good", aws_path="aws"), region="eu-west-1")
    assert again.state is good.state


# --- transports, timeouts, credentials -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_silent_server_times_out(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])  # accept, then say nothing
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        cache = new_cache(f"git://127.0.0.1:{port}/x.git", tmp_path, timeout=1.0)
        with anyio.fail_after(10):
            with pytest.raises(SourceError) as ei:
                await cache.fetch()
        assert "did not finish within 1s" in ei.value.message or "timed out" in ei.value.message
        assert cache.last_error is ei.value
        with pytest.raises(SourceError, match="never fetched"):
            cache.resolve("prod")
    finally:
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()


@pytest.mark.anyio
async def test_http_token_is_sent_as_basic_auth_and_never_shown(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cr3t-t0ken\n")
    settings = RepositorySettings(name="envs", url="https://user:pw@127.0.0.1:1/org/envs.git",
                                  token_file=token, timeout=5.0)
    cache = RepositoryCache(settings, tmp_path / "state")
    client, path = cache._client()
    assert isinstance(client, gitmod.HttpGitClient)
    assert path == "/org/envs.git"
    assert (client._username, client._password) == ("x-access-token", "s3cr3t-t0ken")
    with pytest.raises(SourceError) as ei:
        await cache.fetch()
    text = f"{ei.value} {ei.value.__cause__!s}"
    assert "s3cr3t" not in str(ei.value)
    assert ":pw@" not in str(ei.value)
    assert "https://127.0.0.1:1/org/envs.git" in str(ei.value)
    assert "s3cr3t" not in cache.path.name
    assert "pw" not in redact_url(settings.url)
    assert text  # the cause may mention the host, never the token (checked above on what we show)


def test_ssh_client_uses_key_and_known_hosts(tmp_path):
    key, kh = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("k")
    kh.write_text("h")
    settings = RepositorySettings(name="envs", url="ssh://git@example.com:2222/org/envs.git",
                                  ssh_key_file=key, known_hosts_file=kh, timeout=7.0)
    client, path = RepositoryCache(settings, tmp_path)._client()
    assert isinstance(client, gitmod.SSHGitClient)
    assert isinstance(client.ssh_vendor, gitmod.SubprocessSSHVendor)
    assert client.key_filename == str(key)
    argv = shlex.split(client.ssh_command)
    assert f"UserKnownHostsFile={kh}" in argv
    assert "StrictHostKeyChecking=yes" in argv
    assert "ConnectTimeout=7" in argv
    assert "BatchMode=yes" in argv
    assert (client.host, client.port, client.username, path) == ("example.com", 2222, "git", "/org/envs.git")
    scp, _ = RepositoryCache(RepositorySettings(name="e", url="git@example.com:org/envs.git"), tmp_path)._client()
    assert isinstance(scp, gitmod.SSHGitClient)


def test_cache_dir_names_are_per_url_and_safe():
    a = cache_dir_name("https://tok:en@git.example.com/org/envs.git")
    assert a.startswith("git.example.com_org_envs.git-")
    assert "tok" not in a
    assert a != cache_dir_name("https://git.example.com/org/envs2.git")
