"""Only signed revisions: is a commit signed by one of an environment's trusted keys?

The trusted keys are files named by ``environments.signatures.trusted_key_files``: OpenPGP public keys
(armored or binary, as ``gpg --export`` writes them) and SSH public keys (``ssh-ed25519 AAAA...``
lines, as in ``~/.ssh/id_ed25519.pub``, or an ``allowed_signers`` file). Verification is what
``git verify-commit`` does, with only these keys:

- OpenPGP: ``gpg --verify`` in a private, temporary GNUPGHOME holding nothing but the trusted keys, so
  any valid signature (``GOODSIG`` + ``VALIDSIG``) is by a trusted key; a key missing there is untrusted.
- SSH: ``ssh-keygen -Y find-principals`` then ``ssh-keygen -Y verify -n git`` against an
  allowed-signers file built from the trusted keys.

Both run confined (scrubbed environment, temporary directory, time limit). A verdict is cached by
(commit, digest of the trusted keys): commits are immutable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from .tools import ToolFailed, ToolResult, find_tool, private_dir, run_tool, scrubbed_env

KEYS_SETTING = "environments.signatures.trusted_key_files"
DEFAULT_TIMEOUT = 30.0
_SSH_KEY = re.compile(
    r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\s")


@dataclass(frozen=True)
class CommitSignature:
    """A commit's signed payload (the commit without its signature header) and its signature."""

    payload: bytes
    signature: bytes | None  # None: not signed


@dataclass(frozen=True)
class TrustedKeys:
    openpgp: tuple[bytes, ...]  # key blocks for gpg --import
    allowed_signers: str  # ssh-keygen's allowed-signers file ("" when no SSH key is trusted)
    digest: str

    @property
    def empty(self) -> bool:
        return not self.openpgp and not self.allowed_signers


def read_trusted_keys(files: Sequence[Path]) -> TrustedKeys:
    """Read and classify the key files. SourceError (not retryable) naming the file when one is unusable."""
    pgp: list[bytes] = []
    signers: list[str] = []
    h = hashlib.sha256()
    for i, path in enumerate(files):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SourceError(f"cannot read the trusted key file {path} ({KEYS_SETTING}): {e.strerror or e}",
                              retryable=False) from e
        h.update(hashlib.sha256(data).digest())
        text = data.decode("utf-8", "replace")
        if b"-----BEGIN PGP PUBLIC KEY BLOCK-----" in data or (data[:1] and data[0] & 0x80):
            pgp.append(data)
            continue
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            raise SourceError(f"the trusted key file {path} ({KEYS_SETTING}) is empty", retryable=False)
        for n, line in enumerate(lines):
            if _SSH_KEY.match(line):  # a public key line: give it a principal of its own
                key = " ".join(line.split()[:2])
                signers.append(f'trusted-{i}-{n} namespaces="git" {key}')
            elif len(line.split()) >= 3 and any(_SSH_KEY.match(" ".join(line.split()[j:]) + " ")
                                                for j in (1, 2)):
                signers.append(line)  # already an allowed-signers line: principals [options] key
            else:
                raise SourceError(
                    f"the trusted key file {path} ({KEYS_SETTING}) line {n + 1} is neither an OpenPGP public key "
                    "nor an SSH public key (ssh-ed25519 AAAA...) nor an allowed-signers line", retryable=False)
    return TrustedKeys(tuple(pgp), "\n".join(signers) + ("\n" if signers else ""), h.hexdigest())


class SignatureVerifier:
    """Verifies commit signatures with gpg and ssh-keygen. ``verify`` returns None (trusted) or why not."""

    def __init__(self, gpg: str = "gpg", ssh_keygen: str = "ssh-keygen", *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.gpg = gpg
        self.ssh_keygen = ssh_keygen
        self.timeout = timeout
        self._verdicts: dict[tuple[str, str], str | None] = {}
        self.verifications = 0  # tool runs (tests read it)

    async def verify(self, commit: str, sig: CommitSignature, keys: TrustedKeys) -> str | None:
        ck = (commit, keys.digest)
        if ck in self._verdicts:
            return self._verdicts[ck]
        reason = await self._verify(sig, keys)
        if len(self._verdicts) > 10_000:
            self._verdicts.clear()
        self._verdicts[ck] = reason
        return reason

    async def _verify(self, sig: CommitSignature, keys: TrustedKeys) -> str | None:
        if sig.signature is None:
            return "the commit is not signed"
        if sig.signature.startswith(b"-----BEGIN SSH SIGNATURE-----"):
            if not keys.allowed_signers:
                return "the commit is signed with an SSH key, and no SSH key is trusted"
            return await self._ssh(sig, keys)
        if sig.signature.startswith(b"-----BEGIN PGP SIGNATURE-----"):
            if not keys.openpgp:
                return "the commit is signed with an OpenPGP key, and no OpenPGP key is trusted"
            return await self._gpg(sig, keys)
        return "the commit's signature is neither OpenPGP nor SSH (X.509 signatures are not supported)"

    async def _gpg(self, sig: CommitSignature, keys: TrustedKeys) -> str | None:
        exe = self._tool(self.gpg)
        async with private_dir("driftd-gpg-") as tmp:
            home = tmp / "gnupg"
            home.mkdir(mode=0o700)
            env = scrubbed_env(tmp, {"GNUPGHOME": str(home)})
            base = [exe, "--batch", "--no-tty", "--homedir", str(home)]
            for i, block in enumerate(keys.openpgp):
                (tmp / f"key{i}").write_bytes(block)
                res = await self._run([*base, "--import", str(tmp / f"key{i}")], tmp, env)
                if res is None or res.returncode != 0:
                    raise SourceError(f"gpg cannot import trusted key #{i + 1} ({KEYS_SETTING})", retryable=False)
            (tmp / "sig").write_bytes(sig.signature or b"")
            (tmp / "payload").write_bytes(sig.payload)
            res = await self._run([*base, "--status-fd", "1", "--verify", str(tmp / "sig"), str(tmp / "payload")],
                                  tmp, env)
        if res is None:
            return "gpg did not answer"
        status = res.stdout.decode("utf-8", "replace")
        fields = [ln.split()[1:] for ln in status.splitlines() if ln.startswith("[GNUPG:] ")]
        codes = {f[0]: f[1:] for f in fields if f}
        if res.returncode == 0 and "GOODSIG" in codes and "VALIDSIG" in codes:
            return None
        if "BADSIG" in codes:
            return f"the OpenPGP signature by key {codes['BADSIG'][0]} does not match the commit"
        for code, why in (("EXPKEYSIG", "has expired"), ("REVKEYSIG", "is revoked"), ("EXPSIG", "signature expired")):
            if code in codes:
                return f"the OpenPGP key {codes[code][0]} {why}"
        if "NO_PUBKEY" in codes or "ERRSIG" in codes:
            keyid = (codes.get("NO_PUBKEY") or codes.get("ERRSIG") or ["?"])[0]
            return f"signed with OpenPGP key {keyid}, which is not a trusted key ({KEYS_SETTING})"
        return "the OpenPGP signature could not be verified"

    async def _ssh(self, sig: CommitSignature, keys: TrustedKeys) -> str | None:
        exe = self._tool(self.ssh_keygen)
        async with private_dir("driftd-sshsig-") as tmp:
            env = scrubbed_env(tmp)
            (tmp / "allowed_signers").write_text(keys.allowed_signers)
            (tmp / "sig").write_bytes(sig.signature or b"")
            found = await self._run([exe, "-Y", "find-principals", "-f", str(tmp / "allowed_signers"),
                                     "-s", str(tmp / "sig")], tmp, env)
            if found is None or found.returncode != 0 or not found.stdout.strip():
                check = await self._run([exe, "-Y", "check-novalidate", "-n", "git", "-s", str(tmp / "sig")],
                                        tmp, env, stdin=sig.payload)
                if check is not None and check.returncode == 0:
                    return f"signed with an SSH key that is not a trusted key ({KEYS_SETTING})"
                return "the SSH signature is malformed or does not match the commit"
            principal = found.stdout.decode("utf-8", "replace").split()[0]
            res = await self._run([exe, "-Y", "verify", "-f", str(tmp / "allowed_signers"), "-I", principal,
                                   "-n", "git", "-s", str(tmp / "sig")], tmp, env, stdin=sig.payload)
        if res is not None and res.returncode == 0:
            return None
        return f"the SSH signature by trusted key {principal} does not match the commit"

    async def _run(self, argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None
                   ) -> ToolResult | None:
        try:
            res = await run_tool(argv, cwd=cwd, env=env, stdin=stdin, time_limit=self.timeout, max_output=1024 * 1024)
        except ToolFailed:
            return None
        self.verifications += 1
        return res

    @staticmethod
    def _tool(name: str) -> str:
        exe = name if Path(name).is_absolute() else find_tool(name)
        if exe is None:
            raise SourceError(f"{name!r} is not on PATH: it is needed to verify commit signatures "
                              f"({KEYS_SETTING})", retryable=False)
        return exe

