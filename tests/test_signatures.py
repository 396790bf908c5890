"""Only signed revisions, with real signatures made by gpg and ssh-keygen through `git commit -S`: a good one,
one signed by an untrusted key, an unsigned commit on top of a signed one, a forged signature; the
environment stays on its last verified revision and reports `untrusted revision <sha>: <reason>`. The
daemon variant also checks the alert reaching the sandbox's Alertmanager."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from driftd.config import SignatureSettings
from driftd.errors import SourceError
from driftd.sources.loader import DesiredStateLoader
from driftd.sources.signatures import SignatureVerifier, read_trusted_keys
from tests.tools_support import Work, cache_for, env_settings, system_tool

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata: {{v: '{v}'}}\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GpgKey:
    """A real OpenPGP key pair in its own GNUPGHOME (no passphrase), able to sign git commits."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.home = tmp / f"gnupg-{name}"
        self.home.mkdir(mode=0o700)
        self.env = {"GNUPGHOME": str(self.home), "PATH": os.environ["PATH"], "HOME": str(tmp)}
        gpg = system_tool("gpg")
        subprocess.run([gpg, "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.com>",
                        "ed25519", "sign", "never"], env=self.env, check=True, capture_output=True)
        out = subprocess.run([gpg, "--batch", "--with-colons", "--list-keys"], env=self.env, check=True,
                             capture_output=True, text=True).stdout
        self.fingerprint = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
        self.public = tmp / f"{name}.asc"
        self.public.write_bytes(subprocess.run([gpg, "--batch", "--armor", "--export", self.fingerprint],
                                               env=self.env, check=True, capture_output=True).stdout)

    def sign(self) -> list[str]:
        return ["gpg.format=openpgp", f"user.signingkey={self.fingerprint}", f"gpg.program={system_tool('gpg')}"]


class SshKey:
    def __init__(self, tmp: Path, name: str) -> None:
        self.private = tmp / f"{name}_ed25519"
        subprocess.run([system_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(self.private)], check=True)
        self.public = tmp / f"{name}_ed25519.pub"

    def sign(self) -> list[str]:
        return ["gpg.format=ssh", f"user.signingkey={self.private}"]


def _gnupg_homes() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("driftd-gpg-*"))


def trusting(*files: Path) -> SignatureSettings:
    return SignatureSettings(trusted_key_files=tuple(files))


@pytest.mark.anyio
async def test_openpgp_good_untrusted_unsigned_on_top(tmp_path: Path) -> None:
    alice, mallory = GpgKey(tmp_path, "alice"), GpgKey(tmp_path, "mallory")
    work = Work(tmp_path)
    cache = cache_for(work, tmp_path)
    verifier = SignatureVerifier()
    loader = DesiredStateLoader({"envs": cache}, verifier=verifier)
    env = env_settings("prod", signatures=trusting(alice.public))
    plain_env = env_settings("dev")

    # Signed by a trusted key: acted on.
    good = work.commit({"k8s/app.yaml": CM.format(v="1")}, sign=alice.sign(), env=alice.env)
    await cache.fetch()
    r = await loader.load(env)
    assert r.ok, r.error
    assert r.revision == good

    # Signed, but by a key that is not trusted: error, stay on the last verified revision.
    bad = work.commit({"k8s/app.yaml": CM.format(v="2")}, sign=mallory.sign(), env=mallory.env)
    await cache.fetch()
    r = await loader.load(env)
    assert not r.ok
    assert r.error is not None
    assert r.error.startswith(f"untrusted revision {bad}: signed with OpenPGP key ")
    assert mallory.fingerprint[-16:] in r.error
    assert "which is not a trusted key (environments.signatures.trusted_key_files)" in r.error
    assert r.last_good_revision == good
    assert r.state is None
    # An environment without [environments.signatures] acts on the same commit.
    assert (await loader.load(plain_env)).ok

    # An unsigned commit on top of a signed one.
    unsigned = work.commit({"k8s/app.yaml": CM.format(v="3")})
    await cache.fetch()
    r = await loader.load(env)
    assert r.error == f"untrusted revision {unsigned}: the commit is not signed"
    assert r.last_good_revision == good

    # Trusting mallory too (the key files are read at each load): the head is signed by neither.
    r = await loader.load(replace(env, signatures=trusting(alice.public, mallory.public)))
    assert r.error == f"untrusted revision {unsigned}: the commit is not signed"

    # A forged commit: alice's real signature copied onto another message (same tree).
    forged = work.git("hash-object", "-t", "commit", "-w", "--stdin",
                      input_text=work.git("cat-file", "commit", good).rstrip("\n") + " (rewritten)\n")
    work.git("update-ref", "refs/heads/main", forged)
    work.git("push", "-q", "-f", "origin", "main")
    await cache.fetch()
    r = await loader.load(env)
    assert r.error == (f"untrusted revision {forged}: the OpenPGP signature by key {alice.fingerprint[-16:]} "
                       "does not match the commit")
    work.git("reset", "-q", "--hard", unsigned)

    # Signed again by alice: acted on again; verdicts are cached per commit.
    again = work.commit({"k8s/app.yaml": CM.format(v="4")}, sign=alice.sign(), env=alice.env)
    await cache.fetch()
    assert (await loader.load(env)).revision == again
    runs = verifier.verifications
    assert (await loader.load(env)).ok
    assert verifier.verifications == runs
    assert not _gnupg_homes(), "no GNUPGHOME left behind"


@pytest.mark.anyio
async def test_ssh_good_untrusted_and_forged(tmp_path: Path) -> None:
    ann, eve = SshKey(tmp_path, "ann"), SshKey(tmp_path, "eve")
    work = Work(tmp_path)
    cache = cache_for(work, tmp_path)
    loader = DesiredStateLoader({"envs": cache})
    env = env_settings("prod", signatures=trusting(ann.public))

    good = work.commit({"k8s/app.yaml": CM.format(v="1")}, sign=ann.sign())
    await cache.fetch()
    r = await loader.load(env)
    assert (r.ok, r.revision) == (True, good), r.error

    bad = work.commit({"k8s/app.yaml": CM.format(v="2")}, sign=eve.sign())
    await cache.fetch()
    r = await loader.load(env)
    assert r.error == (f"untrusted revision {bad}: signed with an SSH key that is not a trusted key "
                       "(environments.signatures.trusted_key_files)")
    assert r.last_good_revision == good

    # Signed with an SSH key while only OpenPGP keys are trusted.
    alice = GpgKey(tmp_path, "alice")
    r = await loader.load(replace(env, signatures=trusting(alice.public)))
    assert r.error == f"untrusted revision {bad}: the commit is signed with an SSH key, and no SSH key is trusted"

    # A forged commit: ann's real signature copied onto different content.
    payload_sig = work.git("cat-file", "commit", good)
    forged_text = payload_sig.rstrip("\n") + " (rewritten)\n"  # same tree and signature, another message
    forged = work.git("hash-object", "-t", "commit", "-w", "--stdin", input_text=forged_text)
    work.git("update-ref", "refs/heads/main", forged)
    work.git("push", "-q", "-f", "origin", "main")
    await cache.fetch()
    r = await loader.load(env)
    assert r.error is not None
    assert r.error.startswith(f"untrusted revision {forged}: the SSH signature by trusted key ")
    assert "does not match the commit" in r.error

    # An allowed-signers file works as a trusted key file too.
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"ann@example.com namespaces=\"git\" {ann.public.read_text().split(' ', 2)[0]} "
                       f"{ann.public.read_text().split()[1]}\n")
    good2 = work.commit({"k8s/app.yaml": CM.format(v="5")}, sign=ann.sign())
    await cache.fetch()
    r = await loader.load(replace(env, signatures=trusting(signers)))
    assert (r.ok, r.revision) == (True, good2), r.error


def test_unusable_trusted_key_file_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key\n")
    with pytest.raises(SourceError, match=r"junk.pub \(environments.signatures.trusted_key_files\) line 1 is neither"):
        read_trusted_keys([junk])
    with pytest.raises(SourceError, match="cannot read the trusted key file"):
        read_trusted_keys([tmp_path / "absent.asc"])


def test_config_keys_name_the_key_and_the_file(tmp_path: Path) -> None:
    from driftd.config import load_config
    from driftd.errors import ConfigErrors

    key = tmp_path / "alice.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0ZlRxXgu4n1TuiGk0vbN4U1Z1kIpd6QGv4lr9Nb9P ann\n")
    base = ('[[clusters]]\nname = "c"\n[[repositories]]\nname = "envs"\nurl = "https://git.example.com/e.git"\n'
            '[[environments]]\nname = "prod"\nrepository = "envs"\nbranch = "main"\n{extra}'
            '  [environments.kubernetes]\n  cluster = "c"\n{tables}')
    cfg = tmp_path / "ok.toml"
    cfg.write_text(base.format(extra='sops_age_key_file = "k.agekey"\n',
                               tables='  [environments.signatures]\n  trusted_key_files = ["alice.pub"]\n'))
    (tmp_path / "k.agekey").write_text("AGE-SECRET-KEY-1XYZ\n")
    env = load_config(cfg).environments[0]
    assert env.sops_age_key_file == tmp_path / "k.agekey"
    assert env.signatures == SignatureSettings(trusted_key_files=(key,))

    bad = tmp_path / "bad.toml"
    bad.write_text(base.format(extra='sops_age_key_file = "gone.agekey"\n',
                               tables='  [environments.signatures]\n  trusted_key_files = []\n'))
    with pytest.raises(ConfigErrors) as ei:
        load_config(bad)
    got = {e.key: e.message for e in ei.value.errors}
    assert set(got) == {"environments[0].sops_age_key_file", "environments[0].signatures.trusted_key_files"}
    assert "gone.agekey" in got["environments[0].sops_age_key_file"]
    assert "list at least one OpenPGP or SSH public key file" in got["environments[0].signatures.trusted_key_files"]
    bad.write_text(base.format(extra="", tables='  [environments.signatures]\n  trusted_key_files = ["nope.asc"]\n'))
    with pytest.raises(ConfigErrors) as ei:
        load_config(bad)
    assert [(e.key, "nope.asc" in e.message) for e in ei.value.errors] == \
        [("environments[0].signatures.trusted_key_files[0]", True)]
