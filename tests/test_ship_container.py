"""The container image, without a Docker engine: the Dockerfile is parsed and held to its rules, and the
builder stage's own RUN steps are executed in a temp dir to build a venv that must run `driftd --help`."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

COMPILERS = ("gcc", "g++", "cc", "clang", "make", "build-essential", "libc6-dev", "python3-dev", "cargo", "rustc",
             "cmake", "pkg-config", "autoconf", "automake", "libtool")


@dataclass
class Instruction:
    op: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def ops(self, op: str) -> list[Instruction]:
        return [i for i in self.instructions if i.op == op]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages. Handles continuations and comment lines as BuildKit does."""
    instructions: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        op, _, args = buf.partition(" ")
        instructions.append(Instruction(op.upper(), args.strip(), start))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.op == "FROM":
            words = ins.args.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(_expand(base, global_args), name))
        elif not stages:
            assert ins.op == "ARG", f"line {ins.line}: only ARG may precede FROM"
            k, _, v = ins.args.partition("=")
            global_args[k] = _expand(v.strip('"'), global_args)  # a default may name an earlier ARG
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages


def _expand(s: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), s)


def _env_pairs(args: str) -> dict[str, str]:
    out = {}
    for word in shlex.split(args):
        k, _, v = word.partition("=")
        out[k] = v
    return out


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_base_images_are_pinned_slim_python_311(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    assert len(stages) >= 2, "multi-stage"
    for st in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", st.base), st.base


def test_final_stage_is_unprivileged_and_lean(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    final = stages[-1]
    users = final.ops("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit(), f"numeric user (runAsNonRoot can only check a number), found {uid!r}"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    runs = " ".join(i.args for i in final.ops("RUN"))
    words = set(re.findall(r"[\w+.-]+", runs))
    assert not words & set(COMPILERS), f"build tools in the final stage: {words & set(COMPILERS)}"
    assert "apt-get install" not in runs
    assert "pip install" not in runs
    # only the built venv (and the optional kubectl) come from other stages
    for cp in final.ops("COPY"):
        m = re.search(r"--from=(\S+)", cp.args)
        assert m, f"line {cp.line}: the final stage copies only from build stages"
        assert m.group(1) in {s.name for s in stages[:-1]}
    assert any("/opt/driftd" in c.args for c in final.ops("COPY"))


def test_final_stage_runs_driftd_with_config_state_and_healthcheck(
        dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    final = stages[-1]
    (entry,) = final.ops("ENTRYPOINT")
    assert json.loads(entry.args) == ["driftd", "run"]
    (cmd,) = final.ops("CMD")
    assert json.loads(cmd.args) == ["--config", "/etc/driftd/driftd.toml"]
    env: dict[str, str] = {}
    for e in final.ops("ENV"):
        env.update(_env_pairs(e.args))
    assert env["DRIFTD_CONFIG"] == "/etc/driftd/driftd.toml"
    assert env["PATH"].startswith("/opt/driftd/bin:")
    (vol,) = final.ops("VOLUME")
    assert json.loads(vol.args) == ["/var/lib/driftd"]
    (hc,) = final.ops("HEALTHCHECK")
    assert "http://127.0.0.1:9717/healthz" in hc.args
    # the probe uses only the interpreter (no curl in a slim image) and runs as-is
    probe = json.loads(hc.args.partition("CMD")[2].strip())
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "HEALTHCHECK", "exec")
    labels = " ".join(i.args for i in final.ops("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_builder_installs_from_the_lock_without_caches(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    (builder,) = [s for s in stages if s.name == "builder"]
    pip = [r.args for r in builder.ops("RUN") if "pip\" install" in r.args or "pip install" in r.args]
    assert pip, "the builder runs pip install"
    for cmd in pip:
        assert "-c requirements.lock" in cmd
        assert "--no-cache-dir" in cmd
    copied = " ".join(c.args for c in builder.ops("COPY"))
    assert "requirements.lock" in copied
    # the RUN steps are replayed by the slow test below: they must not name absolute paths
    for r in builder.ops("RUN"):
        assert "/opt" not in r.args, f"line {r.line}: use $VIRTUAL_ENV"
        assert "/src" not in r.args, f"line {r.line}: use WORKDIR"


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the simple patterns we use: last match wins, '!' re-includes,
    a directory pattern covers what is below it."""
    verdict = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        rx = fnmatch.translate(p).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if any(re.fullmatch(rx, pre) for pre in prefixes):
            verdict = not neg
    return verdict


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest(
        dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    _, stages = dockerfile
    needed = []
    for st in stages:
        for cp in st.ops("COPY"):
            if "--from" in cp.args:
                continue
            needed += shlex.split(cp.args)[:-1]
    assert needed
    for src in needed:
        src = src.rstrip("/")
        assert (ROOT / src).exists(), f"COPY source {src} is missing from the repository"
        probe = f"{src}/cli.py" if (ROOT / src).is_dir() else src
        assert not _ignored(probe, patterns), f"{probe} is excluded by .dockerignore"
    for junk in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".sandbox/sandbox.json",
                 "driftd/__pycache__/cli.cpython-311.pyc", "bench/x.py"):
        assert _ignored(junk, patterns), f"{junk} would be sent to the Docker daemon"


@pytest.mark.slow
def test_builder_steps_produce_a_working_venv(tmp_path: Path, dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    """Replay the builder stage (WORKDIR, ENV, COPY from the context, RUN with /bin/sh -c) in a temp dir.
    The only change: --no-cache-dir is dropped so pip's cache keeps the test fast."""
    _, stages = dockerfile
    (builder,) = [s for s in stages if s.name == "builder"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert base_python.exists(), base_python
    (bindir / "python").symlink_to(base_python)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{bindir}:/usr/local/bin:/usr/bin:/bin"
    venv = tmp_path / "venv"
    workdir = tmp_path
    t0 = time.monotonic()
    for ins in builder.instructions:
        if ins.op == "WORKDIR":
            workdir = tmp_path / ins.args.strip("/").replace("/", "_")
            workdir.mkdir(exist_ok=True)
        elif ins.op == "ENV":
            env.update(_env_pairs(ins.args))
            env["VIRTUAL_ENV"] = str(venv)
        elif ins.op == "ARG":  # a build argument's default, unless the environment sets it (PIP_CERT here)
            k, _, v = ins.args.partition("=")
            env.setdefault(k, v.strip('"'))
        elif ins.op == "COPY":
            *srcs, dest = shlex.split(ins.args)
            for src in srcs:
                s = ROOT / src
                d = workdir / dest if not dest.startswith("./") else workdir / dest[2:]
                if s.is_dir():
                    shutil.copytree(s, d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
                else:
                    d.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(s, d / s.name)
        elif ins.op == "RUN":
            cmd = ins.args.replace("--no-cache-dir", "")
            p = subprocess.run(["/bin/sh", "-c", cmd], cwd=workdir, env=env, capture_output=True, text=True,
                               timeout=900)
            assert p.returncode == 0, f"Dockerfile line {ins.line}: {ins.args}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        else:
            raise AssertionError(f"line {ins.line}: the replay does not know {ins.op}; teach it")
    build_s = time.monotonic() - t0
    driftd = venv / "bin" / "driftd"
    assert driftd.exists()
    p = subprocess.run([str(driftd), "--help"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert "check" in p.stdout
    assert "permissions" in p.stdout
    # the installers are gone from the runtime venv, dev tools from the lock never came in
    assert not (venv / "bin" / "pip").exists()
    site = next((venv / "lib").glob("python3.*/site-packages"))
    names = {x.name.split("-")[0].lower() for x in site.glob("*.dist-info")}
    assert {"kubernetes_asyncio", "aioboto3", "dulwich"} <= names
    assert not names & {"pytest", "moto", "ruff", "mypy"}, names & {"pytest", "moto", "ruff", "mypy"}
    # versions come from the lock
    lock = dict(ln.split("==") for ln in (ROOT / "requirements.lock").read_text().splitlines()
                if "==" in ln and not ln.startswith("#"))
    lock = {k.lower().replace("-", "_"): v for k, v in lock.items()}
    for info in site.glob("*.dist-info"):
        name, _, ver = info.name[: -len(".dist-info")].partition("-")
        key = name.lower().replace("-", "_")
        if key in lock:
            assert ver == lock[key], f"{name} {ver} is not the locked {lock[key]}"
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file())
    print(f"\nbuilder replay: {build_s:.1f}s, venv {size / 1e6:.0f} MB, {len(names)} distributions")
