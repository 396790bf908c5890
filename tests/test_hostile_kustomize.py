"""Issue 14 §2: kustomize confined to the environment's tree, remote bases refused unless opted in,
and external tools run with a scrubbed environment, a time limit and bounded output.

Real kubectl, a real Git repository read through the loader, a real HTTP server standing in for
the "local address" a remote base pointed at."""

from __future__ import annotations

import http.server
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from driftd.config import EnvironmentSettings, KubernetesEnvSettings, RepositorySettings
from driftd.errors import DesiredStateError
from driftd.sources.git import RepositoryCache
from driftd.sources.kustomize import Kustomizer, confinement_problem
from driftd.sources.loader import DesiredStateLoader
from driftd.sources.tools import ToolFailed, private_dir, run_tool, scrubbed_env

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not on PATH")

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: {value}\n"
HOST_SECRET = "host-file-content-7f3a9c"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _repo(tmp_path: Path, files: dict[str, str], symlinks: dict[str, str] | None = None) -> Path:
    """A bare repository whose branch prod holds ``files`` (and ``symlinks``: path -> target)."""
    bare = tmp_path / "envs.git"
    work = tmp_path / "work"
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    _git("init", "-q", "-b", "prod", str(work), cwd=tmp_path)
    for p, text in files.items():
        (work / p).parent.mkdir(parents=True, exist_ok=True)
        (work / p).write_text(text)
    for p, target in (symlinks or {}).items():
        (work / p).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / p)
    _git("add", "-A", cwd=work)
    _git("commit", "-qm", "envs", cwd=work)
    _git("push", "-q", str(bare), "prod", cwd=work)
    return bare


async def _load(tmp_path: Path, bare: Path, *, allow_remote: bool = False, kustomizer: Kustomizer | None = None):
    cache = RepositoryCache(RepositorySettings(name="envs", url=str(bare)), tmp_path / "state")
    await cache.fetch()
    loader = DesiredStateLoader({"envs": cache}, kustomizer=kustomizer)
    env = EnvironmentSettings(name="prod", repository="envs", branch="prod",
                              kubernetes=KubernetesEnvSettings(cluster="c", path="envs/prod", namespace="apps",
                                                               allow_remote_bases=allow_remote))
    return await loader.load(env)


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory of the host, outside any repository, holding what looks like a manifest."""
    d = tmp_path / "host" / "etc-driftd"
    d.mkdir(parents=True)
    (d / "cm.yaml").write_text(CM.format(name="from-the-host", value=HOST_SECRET))
    (d / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    return d


@pytest.mark.anyio
async def test_dotdot_out_of_the_temporary_copy_is_refused(tmp_path: Path, host_dir: Path) -> None:
    """`resources: ../../../../<dir>` loaded a directory of the host into the desired state."""
    escape = "../" * 30 + str(host_dir).lstrip("/")
    bare = _repo(tmp_path, {
        "envs/prod/kustomization.yaml": f"resources:\n  - app.yaml\n  - {escape}\n",
        "envs/prod/app.yaml": CM.format(name="app", value="1"),
    })
    res = await _load(tmp_path, bare)
    assert not res.ok
    names = {o.key.name for o in res.state.kubernetes} if res.state else set()
    assert "from-the-host" not in names
    (p,) = res.problems
    assert p.file == "envs/prod/kustomization.yaml"
    assert "resources[1]" in p.message
    assert "leaves the environment's directory" in p.message
    assert HOST_SECRET not in str(res.error)


@pytest.mark.anyio
@pytest.mark.parametrize("kustomization", [
    "resources: [{host}]\n",  # absolute
    "resources: [{host}/cm.yaml]\n",
    "resources: [../other-env]\n",  # another environment's directory of the same repository
    "patches:\n  - path: ../../../../../../../..{host}/cm.yaml\n",
    "configMapGenerator:\n  - name: x\n    files: [k=../../../../../../../..{host}/cm.yaml]\n",
    "components: [../../../../../../../..{host}]\n",
])
async def test_every_path_field_is_confined(tmp_path: Path, host_dir: Path, kustomization: str) -> None:
    bare = _repo(tmp_path, {
        "envs/prod/kustomization.yaml": kustomization.format(host=host_dir),
        "envs/other-env/kustomization.yaml": "resources: [cm.yaml]\n",
        "envs/other-env/cm.yaml": CM.format(name="other", value="2"),
    })
    res = await _load(tmp_path, bare)
    assert not res.ok
    (p,) = res.problems
    assert p.file == "envs/prod/kustomization.yaml"
    assert "refused" in p.message or "leaves the environment's directory" in p.message, p.message
    assert HOST_SECRET not in str(res.error)


@pytest.mark.anyio
async def test_symlink_out_of_the_tree_is_refused(tmp_path: Path, host_dir: Path) -> None:
    bare = _repo(tmp_path, {"envs/prod/kustomization.yaml": "resources: [host]\n"},
                 symlinks={"envs/prod/host": str(host_dir)})
    res = await _load(tmp_path, bare)
    assert not res.ok
    assert any("symbolic links are refused" in p.message and p.file == "envs/prod/host" for p in res.problems)
    assert HOST_SECRET not in str(res.error)
    assert not any(o.key.name == "from-the-host" for o in (res.state.kubernetes if res.state else ()))


@pytest.mark.anyio
async def test_overlay_on_a_base_inside_the_environment_still_renders(tmp_path: Path) -> None:
    bare = _repo(tmp_path, {
        "envs/prod/base/kustomization.yaml": "resources: [cm.yaml]\n",
        "envs/prod/base/cm.yaml": CM.format(name="web", value="1"),
        "envs/prod/overlay/kustomization.yaml":
            "resources: [../base]\nnamePrefix: prod-\nconfigMapGenerator:\n  - name: gen\n    files: [k=f.txt]\n",
        "envs/prod/overlay/f.txt": "v",
    })
    res = await _load(tmp_path, bare)
    assert res.ok, res.problems
    names = {o.key.name for o in res.state.kubernetes}
    assert "prod-web" in names
    assert any(n.startswith("prod-gen-") for n in names)


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Counting.hits.append(self.path)
        body = CM.format(name="remote", value="r").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Counting.hits = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.anyio
async def test_remote_base_is_refused_without_opt_in_and_no_request_is_made(tmp_path: Path, local_server: str) -> None:
    bare = _repo(tmp_path, {"envs/prod/kustomization.yaml": f"resources: [{local_server}/cm.yaml]\n"})
    res = await _load(tmp_path, bare)
    assert not res.ok
    (p,) = res.problems
    assert "remote bases are refused" in p.message
    assert "allow_remote_bases" in p.message
    assert _Counting.hits == [], "kubectl made a request to the local address"
    # a name that is not in the tree is not passed on either (kustomize would try it as a URL)
    (tmp_path / "b").mkdir()
    bare2 = _repo(tmp_path / "b", {"envs/prod/kustomization.yaml": "resources: [example.com/org/repo]\n"})
    res = await _load(tmp_path / "b", bare2)
    assert "does not exist in the environment's tree" in res.problems[0].message


@pytest.mark.anyio
async def test_remote_base_with_opt_in_is_fetched(tmp_path: Path, local_server: str) -> None:
    bare = _repo(tmp_path, {"envs/prod/kustomization.yaml": f"resources: [{local_server}/cm.yaml]\n"})
    res = await _load(tmp_path, bare, allow_remote=True)
    assert res.ok, res.problems
    assert [o.key.name for o in res.state.kubernetes] == ["remote"]
    assert _Counting.hits == ["/cm.yaml"]


def test_confinement_check_names_field_and_entry() -> None:
    files = {"e/k/kustomization.yaml": b"resources: [ok.yaml]\npatchesJson6902:\n  - path: /etc/passwd\n",
             "e/k/ok.yaml": b""}
    p = confinement_problem("e/k/kustomization.yaml", files, files, root="e")
    assert isinstance(p, DesiredStateError)
    assert "patchesJson6902[0].path '/etc/passwd'" in p.message
    assert "absolute" in p.message
    # a base reached through another kustomization is checked too
    files = {"e/o/kustomization.yaml": b"resources: [../b]\n", "e/b/kustomization.yaml": b"resources: [../../x]\n"}
    p = confinement_problem("e/o/kustomization.yaml", files, files, root="e")
    assert p is not None
    assert p.file == "e/b/kustomization.yaml"


# --- the confined runner --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_kubectl_runs_with_a_scrubbed_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What kubectl kustomize sees: no AWS_*, no tokens, no KUBECONFIG, not the service's HOME, in a
    private directory. A wrapper records its environment, then runs the real kubectl."""
    service_home = tmp_path / "service-home"
    (service_home / ".kube").mkdir(parents=True)
    for k, v in {"AWS_SECRET_ACCESS_KEY": "aws-secret-1", "AWS_ACCESS_KEY_ID": "AKIA", "KUBECONFIG": "/k/cfg",
                 "GITHUB_TOKEN": "gh-token-2", "DRIFTD_API_TOKEN": "api-3", "HOME": str(service_home),
                 "SSH_AUTH_SOCK": "/run/agent"}.items():
        monkeypatch.setenv(k, v)
    dump = tmp_path / "seen"
    wrapper = tmp_path / "kubectl-wrapper"
    wrapper.write_text(f"#!/bin/sh\nenv > {dump}.env\npwd > {dump}.cwd\nexec {shutil.which('kubectl')} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    files = {"e/kustomization.yaml": b"resources: [cm.yaml]\n", "e/cm.yaml": CM.format(name="a", value="1").encode()}
    out = await Kustomizer(kubectl=str(wrapper)).render(files, ["e/kustomization.yaml"], root="e")
    assert isinstance(out["e/kustomization.yaml"], bytes), out
    _check_scrubbed(dump, service_home)


def _check_scrubbed(dump: Path, service_home: Path) -> None:
    text = Path(f"{dump}.env").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert not [k for k in env if k.startswith("AWS_")]
    for secret in ("aws-secret-1", "gh-token-2", "api-3", "/run/agent"):
        assert secret not in text
    assert env["KUBECONFIG"] == os.devnull
    assert env["HOME"] != str(service_home)
    assert "driftd-kustomize-" in env["HOME"]
    cwd = Path(Path(f"{dump}.cwd").read_text().strip())
    assert "driftd-kustomize-" in str(cwd)
    assert not cwd.exists(), "the private directory is removed afterwards"


@pytest.mark.anyio
async def test_time_limit_kills_the_whole_process_group(tmp_path: Path) -> None:
    async with private_dir() as d:
        t0 = time.monotonic()
        with pytest.raises(ToolFailed, match="did not finish within 1s"):
            await run_tool(["/bin/sh", "-c", "sleep 300 & echo $! > child.pid; wait"], cwd=d, time_limit=1.0)
        assert time.monotonic() - t0 < 5
        pid = int((d / "child.pid").read_text())
    assert not await anyio.to_thread.run_sync(_gone_within, pid, 5.0), "a grandchild outlived the time limit"


def _gone_within(pid: int, seconds: float) -> bool:
    """True while the process is still alive after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.anyio
async def test_output_is_bounded(tmp_path: Path) -> None:
    async with private_dir() as d:
        with pytest.raises(ToolFailed, match="printed more than 1,048,576 bytes on stdout"):
            await run_tool(["/usr/bin/yes"], cwd=d, time_limit=30, max_output=1024 * 1024)
        with pytest.raises(ToolFailed, match="on stderr"):
            await run_tool(["/bin/sh", "-c", "yes >&2"], cwd=d, time_limit=30, max_stderr=64 * 1024)


def test_scrubbed_env_keeps_only_what_is_listed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "x")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = scrubbed_env(tmp_path, {"SOPS_AGE_KEY_FILE": "/k"})
    assert "AWS_SESSION_TOKEN" not in env
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["HOME"] == str(tmp_path)
    assert env["SOPS_AGE_KEY_FILE"] == "/k"
