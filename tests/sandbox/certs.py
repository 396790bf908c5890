"""Certificates and secrets for the sandbox, made with the openssl CLI (no new dependency)."""

from __future__ import annotations

import ctypes
import ctypes.util
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KubePki:
    ca_crt: Path
    ca_key: Path
    serving_crt: Path
    serving_key: Path
    admin_crt: Path
    admin_key: Path
    sa_key: Path


def _openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {out.stderr.strip()}")


def _rsa_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    path.chmod(0o600)


def _cnf(path: Path, subject: dict[str, str], ext: list[str]) -> None:
    dn = "\n".join(f"{k} = {v}" for k, v in subject.items())
    path.write_text(f"[req]\ndistinguished_name = dn\nprompt = no\n\n[dn]\n{dn}\n\n[ext]\n" + "\n".join(ext) + "\n")


def _leaf(d: Path, name: str, ca_crt: Path, ca_key: Path, subject: dict[str, str], ext: list[str]) -> None:
    key, csr, crt, cnf = (d / f"{name}{s}" for s in (".key", ".csr", ".crt", ".cnf"))
    _rsa_key(key)
    _cnf(cnf, subject, ext)
    _openssl("req", "-new", "-key", str(key), "-config", str(cnf), "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "3650", "-sha256",
        "-extfile", str(cnf), "-extensions", "ext", "-out", str(crt),
    )  # fmt: skip
    csr.unlink()


def make_kube_pki(d: Path) -> KubePki:
    """A CA that signs the apiserver's serving cert and an admin client cert (O=system:masters)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt, ca_cnf = d / "ca.key", d / "ca.crt", d / "ca.cnf"
    _rsa_key(ca_key)
    _cnf(
        ca_cnf,
        {"CN": "driftd-sandbox-ca"},
        [
            "basicConstraints = critical,CA:TRUE",
            "keyUsage = critical,keyCertSign,cRLSign,digitalSignature",
            "subjectKeyIdentifier = hash",
        ],
    )
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-config", str(ca_cnf), "-extensions", "ext",
        "-days", "3650", "-sha256", "-out", str(ca_crt),
    )  # fmt: skip
    leaf_common = ["basicConstraints = critical,CA:FALSE", "keyUsage = critical,digitalSignature,keyEncipherment"]
    _leaf(
        d, "apiserver", ca_crt, ca_key, {"CN": "kube-apiserver"},
        [*leaf_common, "extendedKeyUsage = serverAuth",
         "subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,IP:10.0.0.1"],
    )  # fmt: skip
    _leaf(
        d, "admin", ca_crt, ca_key, {"O": "system:masters", "CN": "driftd-sandbox-admin"},
        [*leaf_common, "extendedKeyUsage = clientAuth"],
    )  # fmt: skip
    sa_key = d / "sa.key"
    _rsa_key(sa_key)
    return KubePki(ca_crt, ca_key, d / "apiserver.crt", d / "apiserver.key", d / "admin.crt", d / "admin.key", sa_key)


def bcrypt_hash(password: str) -> str:
    """bcrypt via the system libcrypt (libxcrypt), as docker-registry's htpasswd auth wants."""
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    lib = ctypes.CDLL(name)
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2y$", 5, None, 0)
    if not salt:
        raise RuntimeError("libcrypt cannot make a bcrypt salt")
    hashed = lib.crypt(password.encode(), salt)
    if not hashed or not hashed.startswith(b"$2"):
        raise RuntimeError("libcrypt has no bcrypt support")
    return str(hashed.decode())
