"""Secret-like values never leave the process. One policy, applied where changes are made (the
targets, with both objects at hand) and again at every exit (state store, alerts, API, CLI).

Masked (path kept, values replaced by ``(redacted)``; a map keeps its keys):

- a Kubernetes Secret's ``data``/``stringData`` and its last-applied annotation; every value of an
  object decrypted from SOPS (``sensitive``);
- whole kinds (:data:`SECRET_KINDS`) and per-kind paths (:data:`SECRET_PATHS`: Lambda
  ``Environment``, SSM ``Value``, IAM ``LoginProfile``);
- fields whose own name looks secret (``/spec/password``, ``{"apiKey": ...}``) anywhere;
- container environment variables whose ``name`` looks secret, in any pod template (containers,
  initContainers, ephemeralContainers, at any depth: Pod, Deployment, CronJob, custom kinds), and
  the values of ``Environment.Variables``-style maps whose keys look secret.

"Looks secret" is :data:`DEFAULT_NAME_PATTERNS` plus what ``[redaction] secret_name_patterns``
adds (:func:`configure`); the defaults cannot be removed. :func:`scrub_text` removes known values
from free text (error messages from an API that echo what was sent).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .jsonpointer import unescape
from .model import REDACTED, Change

_SECRET_ROOTS = ("/data", "/stringData")
# The last-applied annotation carries a Secret's values in clear text.
_LAST_APPLIED = "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"

# Kinds whose values never leave the process: only paths are shown.
SECRET_KINDS = frozenset({"Secret", "SealedSecret", "AWS::SecretsManager::Secret"})
# (kind -> JSON pointer prefixes) whose values are secret in an otherwise ordinary kind.
SECRET_PATHS: Mapping[str, tuple[str, ...]] = {
    "AWS::SSM::Parameter": ("/Value",),  # may be a SecureString; a drift does not say which
    "AWS::Lambda::Function": ("/Environment",),
    "AWS::IAM::User": ("/LoginProfile",),
}
# Names (of env vars, of fields, of map keys) whose values are treated as secret. Case-insensitive,
# searched anywhere in the name: DB_PASSWORD, apiKey, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, SIGNING_KEY.
DEFAULT_NAME_PATTERNS: tuple[str, ...] = (
    r"pass(word|wd|phrase)?", r"secret", r"token", r"credential", r"api_?key", r"private_?key",
    r"access_?key", r"(^|[_.-])key($|[_.-])", r"key$", r"auth", r"cookie", r"signature", r"salt",
    r"securestring", r"dsn$", r"conn(ection)?_?str", r"webhook_?url",
)
# Kubernetes fields whose names match a pattern but whose values are not secrets (references to a
# Secret, booleans, selector keys): their drift stays readable.
_NOT_SECRET_FIELDS = frozenset({
    "key", "secretName", "secretRef", "secretKeyRef", "imagePullSecrets", "secrets", "automountServiceAccountToken",
    "serviceAccountToken", "tokenExpirationSeconds", "expirationSeconds", "authenticationRef", "keyRef",
})
_patterns: re.Pattern[str] = re.compile("|".join(f"(?:{p})" for p in DEFAULT_NAME_PATTERNS), re.I)


def configure(extra_patterns: Iterable[str] = ()) -> None:
    """Add ``extra_patterns`` (regular expressions, case-insensitive) to the defaults, process-wide:
    every exit uses the same policy."""
    global _patterns
    _patterns = re.compile("|".join(f"(?:{p})" for p in (*DEFAULT_NAME_PATTERNS, *extra_patterns)), re.I)


def secret_name(name: str) -> bool:
    return bool(_patterns.search(name))


def _secret_field(name: str) -> bool:
    return name not in _NOT_SECRET_FIELDS and not name.isdigit() and secret_name(name)


def is_secret(kind: str) -> bool:
    return kind == "Secret"


def _sensitive(path: str) -> bool:
    return any(path == r or path.startswith(r + "/") for r in (*_SECRET_ROOTS, _LAST_APPLIED))


def _mask(v: Any) -> Any:
    if v is None or isinstance(v, bool):  # a flag is never a credential, and its drift matters
        return v
    if isinstance(v, dict):
        return {k: _mask(x) for k, x in v.items()}
    return REDACTED


def _tokens(path: str) -> list[str]:
    return [unescape(t) for t in path.split("/")[1:]] if path else []  # lenient: any path is checked


def secret_path(kind: str, path: str) -> bool:
    """Whether values at ``path`` of a ``kind`` are secret by kind, per-kind path or field name alone
    (env entries need the objects: see :func:`redact_changes`)."""
    if kind in SECRET_KINDS and (kind != "Secret" or _sensitive(path) or path in ("", "/")):
        return True
    if any(path == p or path.startswith(p + "/") for p in SECRET_PATHS.get(kind, ())):
        return True
    return any(_secret_field(t) for t in _tokens(path))


def _masked_change(c: Change) -> Change:
    return dataclasses.replace(c, expected=_mask(c.expected), actual=_mask(c.actual))


def scrub_value(v: Any) -> Any:
    """Within a structured value: fields and map keys with secret-looking names, and env entries
    (``{"name": <secret-looking>, "value": ...}``), lose their values."""
    if isinstance(v, dict):
        name = v.get("name")
        env_like = isinstance(name, str) and "value" in v and secret_name(name)
        return {k: (_mask(x) if x is not None and ((env_like and k == "value")
                                                   or (isinstance(k, str) and _secret_field(k)))
                    else scrub_value(x))
                for k, x in v.items()}
    if isinstance(v, list):
        return [scrub_value(x) for x in v]
    return v


def _env_item(objects: Iterable[Any], toks: list[str]) -> bool:
    """Whether the change at ``toks`` is inside an ``env`` list item whose name looks secret, in any of
    ``objects`` (the declared and the live object: a variable renamed by hand is checked under both)."""
    for i in range(len(toks) - 1):
        if toks[i] != "env" or not toks[i + 1].isdigit():
            continue
        for obj in objects:
            node: Any = obj
            for t in toks[:i + 2]:
                if isinstance(node, dict):
                    node = node.get(t)
                elif isinstance(node, list) and t.isdigit() and int(t) < len(node):
                    node = node[int(t)]
                else:
                    node = None
                    break
            if isinstance(node, dict) and isinstance(node.get("name"), str) and secret_name(node["name"]):
                return True
    return False


def redact_changes(kind: str, changes: Iterable[Change], *, sensitive: bool = False,
                   objects: Iterable[Any] = ()) -> list[Change]:
    """``sensitive``: the object came from an encrypted file, so every value is masked, not only a Secret's.
    ``objects``: the declared and live objects the changes were computed from (the targets have them),
    so a change to ``.../env/3/value`` is masked when variable 3 is named like a secret."""
    objs = [o for o in objects if o is not None]
    if sensitive or kind in SECRET_KINDS - {"Secret"}:
        return [_masked_change(c) for c in changes]
    prefixes = SECRET_PATHS.get(kind, ())
    out = []
    for c in changes:
        if is_secret(kind):
            c = dataclasses.replace(c, expected=_mask_at(c.path, c.expected), actual=_mask_at(c.path, c.actual))
        toks = _tokens(c.path)
        if any(c.path == p or c.path.startswith(p + "/") for p in prefixes) \
                or any(_secret_field(t) for t in toks) or _env_item(objs, toks):
            out.append(_masked_change(c))
        else:
            out.append(dataclasses.replace(c, expected=scrub_value(c.expected), actual=scrub_value(c.actual)))
    return out


def _mask_at(path: str, v: Any) -> Any:
    """Mask values below the sensitive roots of a value found at ``path``."""
    if v is None:
        return None
    if _sensitive(path):
        return _mask(v)
    if isinstance(v, dict):
        return {k: _mask_at(f"{path}/{k.replace('~', '~0').replace('/', '~1')}", x) for k, x in v.items()}
    return v


def redact_object(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Secret safe to show: values masked, keys kept."""
    if obj.get("kind") != "Secret":
        return obj
    return _mask_at("", obj)  # type: ignore[no-any-return]


# --- free text ------------------------------------------------------------------------------------------

MIN_SCRUB_LENGTH = 4  # shorter values ("1", "yes") would blank ordinary words out of messages


def secret_values(obj: Any, *, sensitive: bool = False) -> set[str]:
    """The secret-like values of an object, as they may be echoed: env values with secret names, a
    Secret's data (base64 and decoded) and stringData, fields with secret names; every string of a
    ``sensitive`` object."""
    out: set[str] = set()

    def leaves(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                leaves(x)
        elif isinstance(v, list):
            for x in v:
                leaves(x)
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out.add(str(v))

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            name = v.get("name")
            if isinstance(name, str) and "value" in v and secret_name(name):
                leaves(v["value"])
            for k, x in v.items():
                if isinstance(k, str) and _secret_field(k):
                    leaves(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    if sensitive:
        leaves(obj)
    elif isinstance(obj, Mapping):
        walk(obj)
        if obj.get("kind") in SECRET_KINDS:
            for root in ("data", "stringData"):
                leaves(obj.get(root))
            for v in (obj.get("data") or {}).values() if isinstance(obj.get("data"), Mapping) else ():
                if isinstance(v, str):
                    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                        out.add(base64.b64decode(v, validate=True).decode("utf-8"))
        kind = obj.get("kind") or obj.get("Type")
        for prefix in SECRET_PATHS.get(str(kind), ()):
            leaves(obj.get(prefix.strip("/")))
    return {s for s in out if len(s) >= MIN_SCRUB_LENGTH}


def scrub_text(text: str, values: Iterable[str]) -> str:
    """``text`` with every one of ``values`` (longest first) replaced by ``(redacted)``."""
    for v in sorted(set(values), key=len, reverse=True):
        if len(v) >= MIN_SCRUB_LENGTH and v in text:
            text = text.replace(v, REDACTED)
    return text
