"""SOPS-encrypted manifests with real age keys (age-keygen) and the real sops (tests/sandbox/build-tools.sh):
decrypted in memory, objects marked sensitive, a wrong/missing key an error for that environment only, and
against the sandbox cluster the values masked in every report while drift is still detected."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from driftd.config import EnvironmentSettings
from driftd.sources.loader import DesiredStateLoader
from driftd.sources.sops import SopsDecryptor
from tests.tools_support import Work, cache_for, env_settings, sops, system_tool

PASSWORD = "s3cr3t-" + uuid.uuid4().hex[:10]
TOKEN = "tok-" + uuid.uuid4().hex[:10]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def age_key(path: Path) -> str:
    """A new age identity in ``path``; returns its recipient (public key)."""
    subprocess.run([system_tool("age-keygen"), "-o", str(path)], check=True, capture_output=True)
    return next(ln.split(": ")[1] for ln in path.read_text().splitlines() if ln.startswith("# public key: "))


def encrypt(doc: dict[str, object], recipient: str, tmp: Path, regex: str = "^(data|stringData)$") -> str:
    plain = tmp / f"plain-{uuid.uuid4().hex[:6]}.yaml"
    plain.write_text(yaml.safe_dump(doc))
    try:
        out = subprocess.run([sops(), "encrypt", "--age", recipient, "--encrypted-regex", regex, str(plain)],
                             capture_output=True, text=True, check=True,
                             env={"PATH": os.environ["PATH"], "HOME": str(tmp)})
    finally:
        plain.unlink()
    assert PASSWORD not in out.stdout
    assert "ENC[AES256_GCM" in out.stdout
    return out.stdout


def secret(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "stringData": {"password": PASSWORD}}


def configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"token": TOKEN}}


def _sops_temp_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("driftd-sops-*"))


def _files_holding(root: Path, *values: str) -> list[Path]:
    return [f for f in root.rglob("*") if f.is_file() and any(v.encode() in f.read_bytes() for v in values)]


def with_key(env: EnvironmentSettings, key: Path | None) -> EnvironmentSettings:
    from dataclasses import replace
    return replace(env, sops_age_key_file=key)


@pytest.mark.anyio
async def test_decrypted_in_memory_wrong_or_missing_key_errs_that_environment_only(tmp_path: Path) -> None:
    good, other = tmp_path / "good.agekey", tmp_path / "other.agekey"
    recipient = age_key(good)
    age_key(other)
    work = Work(tmp_path)
    work.commit({
        "prod/db-secret.yaml": encrypt(secret("db"), recipient, tmp_path),
        "prod/settings.yaml": encrypt(configmap("settings"), recipient, tmp_path, regex="^data$"),
        "prod/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n",
        "dev/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n",
    })
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    decryptor = SopsDecryptor(sops())
    loader = DesiredStateLoader({"envs": cache}, sops=decryptor)
    before = _sops_temp_dirs()

    ok = await loader.load(with_key(env_settings("prod", path="prod"), good))
    assert ok.ok, ok.error
    assert ok.state is not None
    by = {o.key.name: o for o in ok.state.kubernetes}
    assert by["db"].body["stringData"] == {"password": PASSWORD}
    assert by["settings"].body["data"] == {"token": TOKEN}
    assert "sops" not in by["db"].body, "SOPS metadata is not part of the object"
    assert by["db"].sensitive
    assert by["settings"].sensitive
    assert not by["plain"].sensitive
    assert decryptor.decryptions == 2

    # The cleartext never reached the disk: not in the repository cache, not in a leftover temp dir.
    assert _sops_temp_dirs() == before
    assert not _files_holding(tmp_path / "state", PASSWORD, TOKEN)

    # Same tree, another environment with the wrong key: a clear per-file error naming the key file, never
    # a key; the environment without encrypted files loads.
    wrong = await loader.load(with_key(env_settings("prod-wrong", path="prod"), other))
    assert not wrong.ok
    msgs = sorted(str(p) for p in wrong.problems)
    assert len(msgs) == 2
    assert msgs[0].startswith("prod/db-secret.yaml: cannot decrypt with SOPS: the age key in ")
    assert f"{other} (environments.sops_age_key_file) is not a recipient of this file" in msgs[0]
    assert recipient[:16] in msgs[0]
    key_text = other.read_text() + good.read_text()
    for secret_line in (ln for ln in key_text.splitlines() if ln.startswith("AGE-SECRET-KEY")):
        assert secret_line not in (wrong.error or "")
        assert secret_line not in " ".join(msgs)
    assert PASSWORD not in " ".join(msgs)

    none = await loader.load(env_settings("prod-nokey", path="prod"))
    assert not none.ok
    assert "encrypted with SOPS but the environment has no age key: set environments.sops_age_key_file" \
        in str(none.problems[0])
    missing = await loader.load(with_key(env_settings("prod-gone", path="prod"), tmp_path / "nope.agekey"))
    assert "cannot read the age key file" in str(missing.problems[0])
    dev = await loader.load(env_settings("dev", path="dev"))
    assert dev.ok, dev.error

    # The key file is read at each load: fixing it fixes the environment without a restart or a commit.
    (tmp_path / "rotated.agekey").write_bytes(other.read_bytes())
    env = with_key(env_settings("rot", path="prod"), tmp_path / "rotated.agekey")
    assert not (await loader.load(env)).ok
    (tmp_path / "rotated.agekey").write_bytes(good.read_bytes())
    assert (await loader.load(env)).ok


@pytest.mark.anyio
async def test_a_tampered_file_fails_its_mac(tmp_path: Path) -> None:
    key = tmp_path / "k.agekey"
    recipient = age_key(key)
    enc = encrypt(configmap("settings"), recipient, tmp_path, regex="^data$")
    # Change an unencrypted value: sops's MAC covers every value, so decryption must refuse it.
    tampered = enc.replace("name: settings", "name: other")
    assert tampered != enc
    work = Work(tmp_path)
    work.commit({"prod/settings.yaml": tampered})
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    r = await DesiredStateLoader({"envs": cache}, sops=SopsDecryptor(sops())).load(
        with_key(env_settings("p", path="prod"), key))
    assert not r.ok
    assert "MAC mismatch" in str(r.problems[0])


@pytest.mark.anyio
async def test_an_encrypted_helm_values_file_is_refused_not_rendered(tmp_path: Path) -> None:
    """helm reads values from files: decrypting one would write cleartext to disk, rendering it encrypted would
    deploy ENC[...] strings. Either is wrong: the release is an error naming the values file."""
    from driftd.model import ClusterInfo
    from driftd.sources.helm import HelmRenderer
    from tests.tools_support import CORPUS_HELM, helm

    key = tmp_path / "k.agekey"
    recipient = age_key(key)
    values = encrypt({"podinfo": {"message": PASSWORD}}, recipient, tmp_path, regex="^podinfo$")
    work = Work(tmp_path)
    work.copy(CORPUS_HELM / "podinfo", "k8s/podinfo")
    work.commit({"k8s/secret-values.yaml": values,
                 "k8s/driftd-helm.yaml": "releases:\n  - name: pi\n    chart: podinfo\n"
                                         "    values_files: [secret-values.yaml]\n"})
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    loader = DesiredStateLoader({"envs": cache}, helm=HelmRenderer(helm()), sops=SopsDecryptor(sops()))

    async def info() -> ClusterInfo:
        return ClusterInfo("v1.34.4")

    r = await loader.load(with_key(env_settings(), key), cluster=info)
    assert not r.ok
    assert "values file k8s/secret-values.yaml is encrypted with SOPS, which is not supported" in str(r.problems[0])
    assert loader.helm.renders == 0


@pytest.mark.anyio
async def test_an_encrypted_file_inside_a_kustomization_is_refused(tmp_path: Path) -> None:
    """kustomize reads files from disk, so driftd cannot decrypt for it without writing cleartext: the file is
    an error (the environment is not acted on), not a Secret applied with ENC[...] values."""
    key = tmp_path / "k.agekey"
    recipient = age_key(key)
    work = Work(tmp_path)
    work.commit({"k8s/app/kustomization.yaml": "resources: [db.yaml]\n",
                 "k8s/app/db.yaml": encrypt(secret("db"), recipient, tmp_path)})
    cache = cache_for(work, tmp_path)
    await cache.fetch()
    decryptor = SopsDecryptor(sops())
    r = await DesiredStateLoader({"envs": cache}, sops=decryptor).load(with_key(env_settings(), key))
    assert not r.ok
    assert any(str(p).startswith("k8s/app/db.yaml: this file is encrypted with SOPS inside a kustomization")
               for p in r.problems), r.problems
    assert decryptor.decryptions == 0
