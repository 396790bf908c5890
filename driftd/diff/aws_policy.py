"""IAM policy documents in one canonical form, so equivalent documents compare equal.

IAM treats these as the same policy, and so must we: a JSON string or a parsed
object (URL-encoded too, as IAM returns trust policies); ``"Action": "x"`` and
``["x"]``; any order of statements, actions, resources and principals;
condition values ``true`` and ``"true"``. An absent ``Version`` is not
compared (IAM reads it as 2008-10-17, and some APIs refuse to store anything
older than 2012-10-17, so what is written back carries 2012-10-17: see
``with_version``). Pure: no client library, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

WRITE_VERSION = "2012-10-17"  # what driftd writes when the declaration has no Version
_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")


def parse_policy(doc: Any) -> Any:
    """A document as returned by an API or declared in a template -> a parsed object (unchanged if unparseable)."""
    if isinstance(doc, str):
        text = doc.strip()
        if text.startswith("%7B") or text.startswith("%7b"):
            text = unquote(text)
        try:
            return json.loads(text)
        except ValueError:
            return doc
    return doc


def _scalar(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(int(v)) if float(v).is_integer() else str(v)
    return v


def _str_list(v: Any) -> list[Any]:
    items = v if isinstance(v, list) else [v]
    out = sorted({json.dumps(_scalar(x), sort_keys=True) for x in items})
    return [json.loads(x) for x in out]


def _principal(p: Any) -> Any:
    if isinstance(p, Mapping):
        return {k: _str_list(v) for k, v in sorted(p.items())}
    return p  # "*"


def _condition(c: Any) -> Any:
    if not isinstance(c, Mapping):
        return c
    return {op: ({k: _str_list(v) for k, v in sorted(body.items())} if isinstance(body, Mapping) else body)
            for op, body in sorted(c.items())}


def normalize_statement(st: Any) -> Any:
    if not isinstance(st, Mapping):
        return st
    out: dict[str, Any] = {}
    for k, v in st.items():
        if k in _LIST_KEYS:
            out[k] = _str_list(v)
        elif k in ("Principal", "NotPrincipal"):
            out[k] = _principal(v)
        elif k == "Condition":
            out[k] = _condition(v)
        else:
            out[k] = v
    return out


def normalize_policy(doc: Any) -> Any:
    """Canonical form: parsed, statements a sorted list of normalized statements."""
    d = parse_policy(doc)
    if not isinstance(d, Mapping):
        return d
    out = dict(d)
    st = out.get("Statement")
    if st is not None:
        items = st if isinstance(st, list) else [st]
        out["Statement"] = sorted((normalize_statement(s) for s in items), key=canonical_json)
    return out


def canonical_json(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)


def statement_id(st: Any) -> str:
    """A stable identity for a statement: its Sid (which need not be unique) plus a short content hash."""
    digest = hashlib.sha256(canonical_json(normalize_statement(st)).encode()).hexdigest()[:10]
    sid = st.get("Sid") if isinstance(st, Mapping) else None
    return f"{sid}@{digest}" if sid else digest


def with_version(doc: Any) -> Any:
    """The document to write: parsed, with ``Version`` 2012-10-17 when it has none."""
    d = parse_policy(doc)
    if isinstance(d, Mapping) and "Version" not in d:
        return {"Version": WRITE_VERSION, **d}
    return d


def policies_equal(declared: Any, live: Any) -> bool:
    """Equal as IAM reads them; a Version the declaration leaves out is not compared."""
    a, b = normalize_policy(declared), normalize_policy(live)
    if isinstance(a, Mapping) and isinstance(b, Mapping) and "Version" not in a:
        b = {k: v for k, v in b.items() if k != "Version"}
    return canonical_json(a) == canonical_json(b)
