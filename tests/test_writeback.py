"""Write-back: setter comments edited in place (pure), then end to end: a new tag in the real registry
becomes a commit on the environment branch in the sandbox's git daemon, touching only the marked fields."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from registry_support import push_image

from driftd.config import parse_config
from driftd.engine.images import ImagePoller, MemoryKeyValueStore
from driftd.model import DesiredObject, DesiredState, ResourceKey, TargetKind
from driftd.policy.images import FindingKind
from driftd.policy.setters import ImageUpdate, SetterError, apply_setters, find_setters
from driftd.sources.git_writeback import commit_and_push_sync

MANIFEST = """\
# Deployed by driftd; image versions are written back by driftd.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app   # keep this comment
  labels: {app: app, tier: "web"}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image}:1.0.0 # {{"driftd.io/image": "app"}}
          args: ["--flag",   "x"]
        - name: sidecar
          image: "docker.io/library/busybox:1.36"
---
values:
  tag:    '1.0.0'    # {{"driftd.io/image": "app:tag"}}
  digest: sha256:{zeros} # {{"driftd.io/image": "app:digest"}}
"""


def _manifest(image: str) -> str:
    return MANIFEST.replace("{image}", image).replace("{zeros}", "0" * 64).replace("{{", "{").replace("}}", "}")


def test_setters_edit_only_the_marked_values() -> None:
    text = _manifest("reg.example:5000/team/app").replace("\n", "\r\n", 3)  # mixed line endings survive
    assert [(s.line, s.field, s.value) for s in find_setters(text)] == [
        (12, "image", "reg.example:5000/team/app:1.0.0"), (18, "tag", "1.0.0"), (19, "digest", "sha256:" + "0" * 64)]
    new, changes = apply_setters(text, {"app": ImageUpdate("1.2.0", "sha256:" + "b" * 64)})
    assert [(c.field, c.new) for c in changes] == [
        ("image", "reg.example:5000/team/app:1.2.0"), ("tag", "1.2.0"), ("digest", "sha256:" + "b" * 64)]
    old_lines, new_lines = text.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    differing = [i + 1 for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert differing == [12, 18, 19]
    assert new_lines[17] == "  tag:    '1.2.0'    # {\"driftd.io/image\": \"app:tag\"}\n"
    assert new_lines[0].endswith("\r\n")
    # Other policies' markers and unchanged values are left alone; no update, no change.
    assert apply_setters(text, {"other": ImageUpdate("9")}) == (text, [])
    docs = list(yaml.safe_load_all(new))
    assert docs[1]["values"]["tag"] == "1.2.0"


def test_digest_pins_follow_the_tag() -> None:
    line = 'image: nginx:1.25@sha256:' + "a" * 64 + '  # {"driftd.io/image": "web"}\n'
    new, _ = apply_setters(line, {"web": ImageUpdate("1.26", "sha256:" + "c" * 64)})
    assert new == 'image: nginx:1.26@sha256:' + "c" * 64 + '  # {"driftd.io/image": "web"}\n'


def test_bad_markers_name_the_line() -> None:
    with pytest.raises(SetterError, match="line 2"):
        find_setters('a: 1\nimage: x:1 # {"driftd.io/image": "app:nope"}\n')
    with pytest.raises(SetterError, match="line 1"):
        find_setters('image: x:1 # {"driftd.io/image": app}\n')


# -- end to end -------------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | str = "/") -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _seed_repo(sandbox, files: dict[str, str]) -> tuple[str, Path]:
    name = f"wb-{uuid.uuid4().hex[:8]}"
    bare = sandbox.new_bare_repo(name)
    work = Path(tempfile.mkdtemp(prefix="wb-"))
    _git("clone", "-q", sandbox.git_repo_url(name), str(work))
    for p, text in files.items():
        (work / p).parent.mkdir(parents=True, exist_ok=True)
        (work / p).write_bytes(text.encode())
    _git("add", ".", cwd=work)
    _git("-c", "user.name=dev", "-c", "user.email=dev@example", "commit", "-qm", "initial", cwd=work)
    _git("push", "-q", "origin", "HEAD:main", "HEAD:prod", cwd=work)
    return name, bare


def _config(tmp_path: Path, sandbox, repo_name: str, image: str, message: str | None = None, mode: str = "enforce",
            dry_run: bool = False):
    env: dict = {"name": "prod", "repository": "r", "branch": "prod", "mode": mode, "dry_run": dry_run,
                 "kubernetes": {"cluster": "c", "path": "deploy"},
                 "images": [{"name": "app", "image": image, "semver": "^1", "action": "write-back"}],
                 "write_back": {"author": "driftd-bot <bot@driftd.test>"}}
    if message:
        env["write_back"]["message"] = message
    return parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": [{"name": "c"}],
        "repositories": [{"name": "r", "url": sandbox.git_repo_url(repo_name)}],
        "registries": [{"host": sandbox.registry, "insecure": True}],
        "environments": [env],
    }, tmp_path / "driftd.toml")


def _desired(text: str) -> DesiredState:
    objs = []
    for i, d in enumerate(x for x in yaml.safe_load_all(text) if x and "kind" in x):
        key = ResourceKey(TargetKind.KUBERNETES, d["kind"], d["metadata"]["name"], "default", d["apiVersion"])
        objs.append(DesiredObject(key, d, f"deploy/app.yaml#{i}"))
    return DesiredState(revision="x", kubernetes=tuple(objs))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_new_tag_becomes_a_commit_touching_only_marked_fields(sandbox, tmp_path: Path) -> None:
    reg = sandbox.registry
    repo = f"t/wb-{uuid.uuid4().hex[:8]}"
    image = f"{reg}/{repo}"
    push_image(reg, repo, "1.0.0")
    original = _manifest(image)
    untouched = "kind: ConfigMap\nmetadata: {name: x}   # odd   spacing stays\n"
    name, bare = _seed_repo(sandbox, {"deploy/app.yaml": original, "deploy/other.yml": untouched,
                                      "README.md": "image: x # {\"driftd.io/image\": \"app\"}\n"})
    main_before = _git("--git-dir", str(bare), "rev-parse", "main").strip()
    cfg = _config(tmp_path, sandbox, name, image,
                  message="chore(images): update {environment}\n\n{changes}")
    env = cfg.environments[0]
    poller = ImagePoller(cfg, MemoryKeyValueStore())
    try:
        s0 = await poller.poll(env, _desired(original))
        assert s0.write_back is None  # nothing newer yet: no fetch, no commit
        new_digest = push_image(reg, repo, "1.1.0")
        push_image(reg, repo, "2.0.0")  # outside ^1
        s1 = await poller.poll(env, _desired(original))
    finally:
        await poller.aclose()
    written = [f for f in s1.findings if f.kind is FindingKind.WRITTEN_BACK]
    assert len(written) == 1
    assert (written[0].current, written[0].latest) == ("1.0.0", "1.1.0")
    head = _git("--git-dir", str(bare), "rev-parse", "prod").strip()
    assert written[0].revision == head
    # Only the marked fields changed, byte for byte elsewhere; other files and branches untouched.
    new = _git("--git-dir", str(bare), "show", f"{head}:deploy/app.yaml")
    expected = (original.replace(f"{image}:1.0.0", f"{image}:1.1.0").replace("'1.0.0'", "'1.1.0'")
                .replace("sha256:" + "0" * 64, new_digest))
    assert new == expected
    assert _git("--git-dir", str(bare), "diff", "--name-only", f"{head}~1", head).split() == ["deploy/app.yaml"]
    assert _git("--git-dir", str(bare), "rev-parse", "main").strip() == main_before
    log = _git("--git-dir", str(bare), "log", "-1", "--format=%an <%ae>%n%B", head)
    assert log.startswith("driftd-bot <bot@driftd.test>\nchore(images): update prod\n")
    assert f"{image}:1.0.0 -> {image}:1.1.0" in log
    assert "1.0.0 -> 1.1.0" in log


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "dry_run"), [("observe", False), ("enforce", True)])
async def test_observe_mode_records_what_it_would_write_and_pushes_nothing(sandbox, tmp_path: Path, mode: str,
                                                                            dry_run: bool) -> None:
    reg = sandbox.registry
    repo = f"t/wb-{uuid.uuid4().hex[:8]}"
    image = f"{reg}/{repo}"
    push_image(reg, repo, "1.0.0")
    push_image(reg, repo, "1.3.0")
    original = _manifest(image)
    name, bare = _seed_repo(sandbox, {"deploy/app.yaml": original})
    before = {b: _git("--git-dir", str(bare), "rev-parse", b).strip() for b in ("main", "prod")}
    cfg = _config(tmp_path, sandbox, name, image, mode=mode, dry_run=dry_run)
    poller = ImagePoller(cfg, MemoryKeyValueStore())
    try:
        stats = [await poller.poll(cfg.environments[0], _desired(original)) for _ in range(2)]
    finally:
        await poller.aclose()
    # Nothing reached Git: same heads, no new commit or branch, on every poll.
    assert {b: _git("--git-dir", str(bare), "rev-parse", b).strip() for b in ("main", "prod")} == before
    assert _git("--git-dir", str(bare), "for-each-ref", "--format=%(refname)").split() == \
        ["refs/heads/main", "refs/heads/prod"]
    for s in stats:
        kinds = [f.kind for f in s.findings]
        assert FindingKind.WRITTEN_BACK not in kinds
        assert kinds.count(FindingKind.UPDATE_AVAILABLE) == 1
        would = [f for f in s.findings if f.kind is FindingKind.WOULD_WRITE_BACK]
        assert len(would) == 1
        f = would[0]
        assert (f.current, f.latest, f.revision) == ("1.0.0", "1.3.0", before["prod"])
        assert not f.alerting
        # What the commit would change, line by line, as written_back would list it.
        assert f"deploy/app.yaml:12: app: {image}:1.0.0 -> {image}:1.3.0" in f.message
        assert "deploy/app.yaml:18: app: 1.0.0 -> 1.3.0" in f.message
        assert s.write_back is not None
        assert s.write_back.revision is None
        assert not s.write_back.pushed


def test_concurrent_commit_on_the_branch_is_retried_on_the_new_head(sandbox, tmp_path: Path) -> None:
    original = _manifest("reg.example/app")
    name, bare = _seed_repo(sandbox, {"deploy/app.yaml": original})
    other = Path(tempfile.mkdtemp(prefix="wb-other-"))
    _git("clone", "-q", "-b", "prod", sandbox.git_repo_url(name), str(other))
    calls = []

    def edit(path: str, data: bytes):
        calls.append(path)
        if len(calls) == 1:
            # Between our fetch and our push, a colleague pushes to the same branch.
            (other / "deploy" / "extra.yaml").write_text("kind: ConfigMap\nmetadata: {name: extra}\n")
            _git("add", ".", cwd=other)
            _git("-c", "user.name=dev", "-c", "user.email=dev@example", "commit", "-qm", "colleague", cwd=other)
            _git("push", "-q", "origin", "prod", cwd=other)
        new, changes = apply_setters(data.decode(), {"app": ImageUpdate("1.5.0")})
        return new.encode(), [f"{c.old} -> {c.new}" for c in changes]

    res = commit_and_push_sync(sandbox.git_repo_url(name), "prod", cache_dir=tmp_path / "cache",
                               paths=["deploy"], edit=edit, message=lambda lines: "bump\n\n" + "\n".join(lines),
                               author="driftd <d@example>")
    assert res.attempts == 2
    head = _git("--git-dir", str(bare), "rev-parse", "prod").strip()
    assert res.revision == head
    parents = _git("--git-dir", str(bare), "log", "-1", "--format=%P", head).split()
    colleague = _git("--git-dir", str(bare), "log", "-1", "--format=%H", "--grep=colleague", "prod").strip()
    assert parents == [colleague]  # rebuilt on the new head, nothing of theirs lost
    assert "extra.yaml" in _git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", head)
    assert "reg.example/app:1.5.0" in _git("--git-dir", str(bare), "show", f"{head}:deploy/app.yaml")


def test_nothing_to_change_makes_no_commit(sandbox, tmp_path: Path) -> None:
    name, bare = _seed_repo(sandbox, {"deploy/app.yaml": _manifest("reg.example/app")})
    before = _git("--git-dir", str(bare), "rev-parse", "prod").strip()
    res = commit_and_push_sync(sandbox.git_repo_url(name), "prod", cache_dir=tmp_path / "cache", paths=["deploy"],
                               edit=lambda p, d: (d, []), message=lambda lines: "x", author="d <d@x>")
    assert res.revision is None
    assert _git("--git-dir", str(bare), "rev-parse", "prod").strip() == before


DAEMON_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - name: app
          image: {image}:1.0.0 # {"driftd.io/image": "app"}
"""


def test_enforce_environment_runs_the_written_back_version(sandbox, tmp_path: Path) -> None:
    """`driftd run`: a new tag in the registry -> write-back commit -> the daemon loads it -> the cluster runs it."""
    from tests.daemon_support import DaemonProc, GitRepo, wait_for, write_config
    from tests.sandbox.procs import free_port

    reg, tag = sandbox.registry, uuid.uuid4().hex[:6]
    repo_name = f"t/wbd-{tag}"
    image = f"{reg}/{repo_name}"
    push_image(reg, repo_name, "1.0.0")
    manifest = DAEMON_MANIFEST.replace("{image}", image)
    ns = f"wbd-{tag}"
    sandbox.kubectl("create", "namespace", ns)
    try:
        sandbox.kubectl("create", "-n", ns, "-f", "-", input=manifest)
        git = GitRepo(sandbox, f"wbd-{tag}.git", tmp_path / "work")
        first = git.commit({"deploy/app.yaml": manifest})
        state, port = tmp_path / "state", free_port()
        env = {"name": "prod", "mode": "enforce", "interval": "2s",
               "kubernetes": {"cluster": "sandbox", "namespace": ns, "path": "deploy"},
               "images": [{"name": "app", "image": image, "semver": "^1", "action": "write-back"}],
               "write_back": {"author": "driftd-bot <bot@driftd.test>"}}
        cfg = write_config(tmp_path / "driftd.toml", sandbox, repo_url=git.url, state_dir=state, port=port,
                           envs=[env], registries=[{"host": reg, "insecure": True}])
        d = DaemonProc(cfg, state, port, tmp_path / "driftd.log").start()
        try:
            assert d.wait_checked("prod")["prod"]["status"] == "in_sync"
            push_image(reg, repo_name, "1.1.0")
            push_image(reg, repo_name, "2.0.0")  # outside ^1

            def running() -> str:
                return str(sandbox.kubectl_json("get", "deployment", "app", "-n", ns)
                           ["spec"]["template"]["spec"]["containers"][0]["image"])

            wait_for(lambda: running() == f"{image}:1.1.0", 40, f"the cluster runs 1.1.0; log:\n{d.tail()}")
            bare = Path(sandbox.git_root) / f"wbd-{tag}.git"
            head = _git("--git-dir", str(bare), "rev-parse", "main").strip()
            assert head != first
            assert _git("--git-dir", str(bare), "log", "-1", "--format=%an", head).strip() == "driftd-bot"
            written = wait_for(lambda: [e for e in d.events(env="prod", event="image")
                                        if (e["reason"] or "").startswith("written_back")], 10, "written_back recorded")
            assert written[0]["revision"] == head
            # The environment then reports in sync at the new revision, its image applied by a revert to Git.
            # (The pass that reverts already says in_sync, listing what it reverted; the next one lists nothing.)
            env_now = wait_for(lambda: (e := d.environments()["prod"])["revision"] == head
                               and e["status"] == "in_sync" and not e["drifts"] and e, 20, f"in sync at {head}")
            assert env_now["resources"] == 1
            applied = [e for e in d.events(env="prod", event="reverted") if e["revision"] == head]
            assert applied
            assert applied[0]["name"] == "app"
            # Written once: later polls find the environment up to date.
            time.sleep(5)
            assert _git("--git-dir", str(bare), "rev-parse", "main").strip() == head
        finally:
            assert d.stop() == 0, d.tail()
    finally:
        sandbox.kubectl("delete", "namespace", ns, "--wait=false", check=False)
