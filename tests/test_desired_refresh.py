"""engine.desired.refresh: the one place run and check read an environment's branch and track its last
good revision. A local repository (git CLI, as an operator commits), no sandbox needed."""

from __future__ import annotations

from pathlib import Path

import anyio

from driftd.config import parse_config
from driftd.engine.desired import refresh
from driftd.engine.pools import Sources
from driftd.engine.reconciler import EnvRuntime
from tests.git_support import git

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1'}\n"


def _commit(work: Path, text: str) -> str:
    (work / "k8s").mkdir(exist_ok=True)
    (work / "k8s" / "cm.yaml").write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "change", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_last_good_revision_is_kept_and_named_while_the_branch_does_not_parse(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    git("init", "--quiet", "--initial-branch=prod", str(work), cwd=tmp_path)
    good = _commit(work, CM)
    cfg = parse_config({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "clusters": [{"name": "c"}],
        "repositories": [{"name": "envs", "url": str(work)}],
        "environments": [{"name": "prod", "repository": "envs", "branch": "prod",
                          "kubernetes": {"cluster": "c", "path": "k8s"}}],
    }, tmp_path / "driftd.toml")
    env = cfg.environments[0]

    async def main() -> None:
        sources = Sources(cfg)
        rt = EnvRuntime(env)
        await sources.fetch("envs")
        got = await refresh(rt, sources, cfg)
        assert (got.loaded, got.changed, got.last_good) == (True, True, good)
        assert rt.desired is not None
        assert [o.key.name for o in rt.desired.kubernetes] == ["settings"]
        assert (await refresh(rt, sources, cfg)).changed is False  # same revision: no full pass due

        bad = _commit(work, "kind: ConfigMap\nmetadata: {name: [unclosed\n")
        await sources.fetch("envs")
        got = await refresh(rt, sources, cfg)
        assert (got.loaded, got.last_good) == (False, good)
        assert rt.desired is not None
        assert rt.desired.revision == good  # kept: nothing acts on the broken tree
        assert rt.desired_error is not None
        assert rt.desired_error.startswith("desired state unavailable: ")
        assert f"keeping last good revision {good[:12]}" in rt.desired_error
        assert bad != good

        # A fresh runtime (check, or a worker restarted by a reload) learns the same last good revision.
        fresh = EnvRuntime(env)
        got = await refresh(fresh, sources, cfg)
        assert (got.loaded, got.last_good) == (False, good)
        assert fresh.desired is None

        # The repository's fetch failed: nothing is read, the reason is the fetch's.
        got = await refresh(rt, sources, cfg, fetch_error="cannot fetch repository envs: boom")
        assert got.error == "cannot fetch repository envs: boom"
        assert rt.desired_error is not None
        assert rt.desired_error.startswith("desired state unavailable: cannot fetch repository envs: boom")

        _commit(work, CM.replace("'1'", "'2'"))
        await sources.fetch("envs")
        got = await refresh(rt, sources, cfg)
        assert (got.loaded, got.changed) == (True, True)
        assert rt.desired_error is None

    anyio.run(main)
