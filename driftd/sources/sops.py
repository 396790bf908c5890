"""SOPS-encrypted manifests (age recipients), decrypted in memory with the ``sops`` tool.

A manifest file whose document carries SOPS metadata (a top-level ``sops`` mapping with a ``mac``)
is decrypted before it is read. The ciphertext goes to ``sops decrypt`` on its standard input and
the cleartext comes back on its standard output: neither touches the disk. The age identity is read
from the environment's ``sops_age_key_file`` at each decryption (rotation works) and handed to the
child process only, in ``SOPS_AGE_KEY``; the child runs with a scrubbed environment in an empty
temporary HOME, so sops finds no other key (no ``~/.config/sops/age/keys.txt``, no ssh keys, no cloud
credentials). Objects decrypted here are marked sensitive: their values are masked in every report,
like a Secret's. Neither the key nor cleartext is ever logged; errors name the file and the key
file, never their content.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..errors import DesiredStateError
from .tools import ToolFailed, find_tool, private_dir, run_tool, scrubbed_env
from .yamlsafe import Document

DEFAULT_TIMEOUT = 30.0
KEY_SETTING = "environments.sops_age_key_file"


def is_encrypted(documents: tuple[Document, ...] | list[Document]) -> bool:
    """A SOPS file: its (single) document has ``sops.mac`` (what ``sops decrypt`` verifies)."""
    return any(isinstance(d.value, Mapping) and isinstance(d.value.get("sops"), Mapping)
               and "mac" in d.value["sops"] for d in documents)


def recipients(documents: tuple[Document, ...] | list[Document]) -> list[str]:
    """The age recipients (public keys) a file is encrypted to: safe to show, they help fix a wrong key."""
    out: list[str] = []
    for d in documents:
        meta: Any = d.value.get("sops") if isinstance(d.value, Mapping) else None
        for entry in (meta or {}).get("age") or () if isinstance(meta, Mapping) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("recipient"), str):
                out.append(entry["recipient"])
    return out


class SopsDecryptor:
    """Runs ``sops decrypt`` (``sops`` may be a path; looked up on PATH). Caches cleartext in memory by
    (blob id, key digest): a commit that changes nothing encrypted decrypts nothing."""

    def __init__(self, sops: str = "sops", *, timeout: float = DEFAULT_TIMEOUT, cache_size: int = 4096,
                 cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.sops = sops
        self.timeout = timeout
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._cached = 0
        self.decryptions = 0  # sops processes run (tests read it)

    async def decrypt(self, data: bytes, *, file: str, blob: str, documents: tuple[Document, ...],
                      key_file: Path | None) -> bytes | DesiredStateError:
        """The cleartext of one encrypted file, or an error naming the file (and the key file)."""
        if key_file is None:
            return DesiredStateError(
                f"this file is encrypted with SOPS but the environment has no age key: set {KEY_SETTING}", file=file)
        try:
            key = await anyio.to_thread.run_sync(key_file.read_bytes)
        except OSError as e:
            return DesiredStateError(f"cannot read the age key file {key_file} ({KEY_SETTING}): "
                                     f"{e.strerror or type(e).__name__}", file=file)
        if b"AGE-SECRET-KEY-1" not in key:
            return DesiredStateError(f"{key_file} ({KEY_SETTING}) holds no age identity "
                                     "(a line AGE-SECRET-KEY-1..., as age-keygen writes)", file=file)
        ck = (blob, hashlib.sha256(key).hexdigest())
        hit = self._cache.get(ck)
        if hit is not None:
            self._cache.move_to_end(ck)
            return hit
        exe = self.sops if Path(self.sops).is_absolute() else find_tool(self.sops)
        if exe is None:
            return DesiredStateError(f"this file is encrypted with SOPS and {self.sops!r} is not on PATH "
                                     "(install sops 3.9 or later)", file=file)
        kind = "json" if file.endswith(".json") else "yaml"
        async with private_dir("driftd-sops-") as tmp:
            try:
                res = await run_tool([exe, "decrypt", "--input-type", kind, "--output-type", kind], cwd=tmp,
                                     env=scrubbed_env(tmp / "home", {"SOPS_AGE_KEY": key.decode("utf-8", "replace")}),
                                     stdin=data, time_limit=self.timeout)
            except ToolFailed as e:
                return DesiredStateError(f"sops: {e}", file=file)
            finally:
                del key
        self.decryptions += 1
        if res.returncode != 0:
            return DesiredStateError(_failure(res.stderr, documents, key_file), file=file)
        self._cache[ck] = res.stdout
        self._cached += len(res.stdout)
        while len(self._cache) > self._cache_size or (self._cached > self._cache_bytes and len(self._cache) > 1):
            self._cached -= len(self._cache.popitem(last=False)[1])
        return res.stdout


def _failure(stderr: bytes, documents: tuple[Document, ...], key_file: Path) -> str:
    """What went wrong, from sops's messages, without echoing them: they are not meant for logs."""
    text = stderr.decode("utf-8", "replace").lower()
    to = recipients(documents)
    shown = ", ".join(r[:16] + "..." for r in to[:3]) or "no age recipient"
    if "mac mismatch" in text:
        return "cannot decrypt with SOPS: the file was modified after encryption (MAC mismatch)"
    if "0 successful groups" in text or "no identity matched" in text or "failed to get the data key" in text:
        return (f"cannot decrypt with SOPS: the age key in {key_file} ({KEY_SETTING}) is not a recipient of "
                f"this file (encrypted to {shown})")
    return "cannot decrypt with SOPS: sops failed (is this a valid SOPS file?)"
