"""The shipped systemd unit: it verifies, it is hardened (exposure <= 2.0), its sysusers/tmpfiles
snippets apply, and CPython with driftd's libraries runs under MemoryDenyWriteExecute."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "driftd.service"
SYSUSERS = ROOT / "systemd" / "driftd.sysusers"
TMPFILES = ROOT / "systemd" / "driftd.tmpfiles"
VENV_DRIFTD = Path(sys.executable).parent / "driftd"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def _unit_with_local_exec(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this venv's driftd: verify checks that the binary exists,
    and /usr/bin/driftd exists only on an installed host."""
    assert VENV_DRIFTD.exists(), f"{VENV_DRIFTD} missing: pip install -e . first"
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/driftd run --config /etc/driftd/driftd.toml" in text
    out = tmp_path / "driftd.service"
    out.write_text(text.replace("ExecStart=/usr/bin/driftd ", f"ExecStart={VENV_DRIFTD} "))
    return out


def _directives(path: Path) -> dict[str, list[str]]:
    """Service-section directives, keeping repeated keys (systemd allows them)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        out.setdefault(f"{section}.{k}", []).append(v)
    return out


def test_unit_declares_the_contract() -> None:
    d = _directives(UNIT)
    want = {
        "Service.Type": "notify",
        "Service.NotifyAccess": "main",
        "Service.ExecReload": "/bin/kill -HUP $MAINPID",
        "Service.Restart": "on-failure",
        "Service.User": "driftd",
        "Service.StateDirectory": "driftd",
        "Service.ConfigurationDirectory": "driftd",
        "Service.ProtectSystem": "strict",
        "Service.NoNewPrivileges": "yes",
        "Service.CapabilityBoundingSet": "",
        "Service.AmbientCapabilities": "",
        "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "Service.MemoryDenyWriteExecute": "yes",
        "Service.PrivateUsers": "yes",
        "Service.UMask": "0077",
        "Install.WantedBy": "multi-user.target",
    }
    for k, v in want.items():
        assert d.get(k) == [v], f"{k}: expected {v!r}, found {d.get(k)}"
    assert "@system-service" in d["Service.SystemCallFilter"]
    assert "WatchdogSec" in {k.partition(".")[2] for k in d}
    # the daemon needs the network: no IP deny list
    assert "Service.IPAddressDeny" not in d
    # configparser agrees it is well-formed INI (no stray continuation lines)
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string(UNIT.read_text())
    assert cp.sections() == ["Unit", "Service", "Install"]


@needs_analyze
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    unit = _unit_with_local_exec(tmp_path)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    # verify prints unknown or unparsable directives on stderr and still exits 0: demand silence
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "", p.stderr


@needs_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify test above can fail: a typo in a directive is reported."""
    unit = _unit_with_local_exec(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictest")
                    .replace("ProtectHome=yes", "ProtectHomes=yes"))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert "strictest" in p.stderr
    assert "ProtectHomes" in p.stderr


@needs_analyze
def test_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    unit = _unit_with_local_exec(tmp_path)
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", p.stdout)
    assert m, p.stdout[-2000:] + p.stderr
    exposure = float(m.group(1))
    print(f"\nsystemd-analyze security --offline=true driftd.service: exposure {exposure}")
    assert exposure <= 2.0, p.stdout


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers/systemd-tmpfiles not installed")
def test_sysusers_and_tmpfiles_apply_to_an_empty_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(SYSUSERS)], check=True, capture_output=True)
    passwd = (root / "etc" / "passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("driftd:"))
    fields = entry.split(":")
    assert fields[5] == "/var/lib/driftd"
    assert fields[6].endswith("nologin")
    uid = int(fields[2])
    assert 0 < uid < 1000, "a system user"
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(TMPFILES)], check=True,
                   capture_output=True)
    state = root / "var" / "lib" / "driftd"
    assert state.is_dir()
    assert state.stat().st_uid == uid
    assert state.stat().st_mode & 0o777 == 0o700
    assert (root / "etc" / "driftd").stat().st_mode & 0o777 == 0o750


def _mdwe_supported() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    probe = ("import ctypes,sys;l=ctypes.CDLL(None,use_errno=True);"
             "sys.exit(0 if l.prctl(65,1,0,0,0)==0 and l.prctl(66,0,0,0,0)==1 else 1)")
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0


_UNDER_MDWE = r"""
import ctypes, mmap, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(65, 1, 0, 0, 0) == 0  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit("MDWE is not in force: a W+X mapping was allowed")
# Children inherit MDWE: import everything the daemon loads, then run the CLI.
code = (
    "import ctypes; assert ctypes.CDLL(None).prctl(66,0,0,0,0) == 1\n"
    "import ssl, sqlite3, asyncio\n"
    "import anyio, aiohttp, yaml, deepdiff, prometheus_client, tomli\n"
    "import kubernetes_asyncio.client, kubernetes_asyncio.dynamic\n"
    "import aioboto3, dulwich.client, dulwich.repo\n"
    "import driftd.cli, driftd.config, driftd.render.text\n"
    "ssl.create_default_context()\n"
    "asyncio.run(asyncio.sleep(0))\n"
    "print('imports ok')\n"
)
subprocess.run([sys.executable, "-c", code], check=True)
subprocess.run([sys.argv[1], "--help"], check=True, stdout=subprocess.DEVNULL)
print("cli ok")
"""


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel has no PR_SET_MDWE (Linux >= 6.3)")
def test_cpython_and_libraries_run_under_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes is safe: the kernel's equivalent (prctl PR_SET_MDWE) refuses W+X
    mappings, and the interpreter, every library the daemon imports and the CLI still work under it."""
    p = subprocess.run([sys.executable, "-c", _UNDER_MDWE, str(VENV_DRIFTD)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "imports ok" in p.stdout
    assert "cli ok" in p.stdout
