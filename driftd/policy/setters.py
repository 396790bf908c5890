"""Setter comments in YAML manifests: find marked fields and rewrite their values in place (pure).

A field is marked with a JSON comment at the end of its line::

    image: registry.example/app:1.2.3 # {"driftd.io/image": "app"}
    tag: "1.2.3"                      # {"driftd.io/image": "app:tag"}
    digest: sha256:...                # {"driftd.io/image": "app:digest"}

``app`` is the name of an ``[[environments.images]]`` policy. The edit is line-wise on the text,
never a YAML re-dump: every byte other than the value (comments, quotes, indentation, key
order, line endings) stays as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

MARKER = "driftd.io/image"
FIELDS = ("image", "tag", "digest")

# key: value  # {json}   |   - value  # {json}   (value plain, 'single' or "double" quoted)
_LINE_RE = re.compile(
    r"""^(?P<prefix>[ \t]*(?:-[ \t]+)*(?:(?:"[^"]*"|'[^']*'|[^\s#'"][^#]*?)[ \t]*:[ \t]+)?)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"](?:[^#\n\r]*?[^\s#])?)"""
    r"""(?P<sep>[ \t]+\#[ \t]*)(?P<comment>\{.*\})[ \t]*(?P<eol>\r?\n?)$"""
)


@dataclass(frozen=True)
class Setter:
    line: int  # 1-based
    policy: str
    field: str  # image | tag | digest
    value: str  # unquoted current value


@dataclass(frozen=True)
class ImageUpdate:
    """What a policy selected: the new tag and, when known, its manifest digest."""

    tag: str
    digest: str | None = None


@dataclass(frozen=True)
class SetterChange:
    line: int
    policy: str
    field: str
    old: str
    new: str


class SetterError(ValueError):
    """A marker comment that cannot be honoured; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _parse_marker(comment: str, line: int) -> tuple[str, str] | None:
    if MARKER not in comment:
        return None
    try:
        data = json.loads(comment)
    except json.JSONDecodeError as e:
        raise SetterError(line, f"setter comment is not valid JSON: {e.msg}") from e
    if not isinstance(data, dict) or not isinstance(data.get(MARKER), str):
        raise SetterError(line, f'expected {{"{MARKER}": "<policy>[:tag|:digest]"}}')
    ref: str = data[MARKER]
    policy, _, field = ref.partition(":")
    field = field or "image"
    if not policy or field not in FIELDS:
        raise SetterError(line, f"{ref!r}: expected <policy>, <policy>:tag or <policy>:digest")
    return policy, field


def _unquote(v: str) -> str:
    if v.startswith('"'):
        return str(json.loads(v))
    if v.startswith("'"):
        return v[1:-1].replace("''", "'")
    return v


def _requote(original: str, new: str) -> str:
    if original.startswith('"'):
        return json.dumps(new)
    if original.startswith("'"):
        return "'" + new.replace("'", "''") + "'"
    return new


def find_setters(text: str) -> list[Setter]:
    """Every marked field in a YAML text. Lines mentioning the marker but not parseable raise SetterError."""
    out = []
    for i, line in enumerate(text.splitlines(keepends=True), start=1):
        if MARKER not in line:
            continue
        m = _LINE_RE.match(line)
        if not m:
            raise SetterError(i, "a setter comment must follow a scalar value on the same line")
        parsed = _parse_marker(m.group("comment"), i)
        if parsed:
            out.append(Setter(i, parsed[0], parsed[1], _unquote(m.group("value"))))
    return out


def new_value(field: str, old: str, update: ImageUpdate) -> str:
    """The value a marked field gets. A full image keeps the repository as written and replaces the tag;
    a pinned digest is replaced too when the new one is known, dropped otherwise (a stale pin would win)."""
    if field == "tag":
        return update.tag
    if field == "digest":
        return update.digest or old
    base, _, old_digest = old.partition("@")
    slash, colon = base.rfind("/"), base.rfind(":")
    if colon > slash:
        base = base[:colon]
    out = f"{base}:{update.tag}"
    if old_digest and update.digest:
        out += f"@{update.digest}"
    return out


def apply_setters(text: str, updates: Mapping[str, ImageUpdate]) -> tuple[str, list[SetterChange]]:
    """Rewrite marked fields whose policy has an update. Returns the new text and what changed."""
    lines = text.splitlines(keepends=True)
    changes = []
    for i, line in enumerate(lines):
        if MARKER not in line:
            continue
        m = _LINE_RE.match(line)
        if not m:
            raise SetterError(i + 1, "a setter comment must follow a scalar value on the same line")
        parsed = _parse_marker(m.group("comment"), i + 1)
        if not parsed or parsed[0] not in updates:
            continue
        policy, field = parsed
        raw = m.group("value")
        old = _unquote(raw)
        new = new_value(field, old, updates[policy])
        if new == old:
            continue
        lines[i] = line[:m.start("value")] + _requote(raw, new) + line[m.end("value"):]
        changes.append(SetterChange(i + 1, policy, field, old, new))
    return "".join(lines), changes
