"""Semantic versions and ranges, as image tags use them. Pure: no I/O, no imports beyond the stdlib.

Versions accept a ``v`` prefix and missing minor/patch (``v1.4`` is 1.4.0), order
pre-releases below their release, and ignore build metadata for ordering (SemVer 2.0 §10).

Ranges follow the npm / Masterminds grammar Flux uses: comparators separated by spaces
(or commas) are ANDed, ``||`` ORs sets; ``^1.4``, ``~1.4.2``, x-ranges (``1.x``, ``1.4.*``,
``*``) and hyphen ranges (``1.2 - 1.4``). Pre-releases match only when the range itself
mentions one (Masterminds' rule), so ``>=1.0`` never picks ``2.0.0-rc.1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION_RE = re.compile(
    r"^[vV]?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""  # kept for display, never for ordering or equality
    original: str = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after all of its pre-releases; numeric identifiers sort below alphanumeric ones.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            s += "-" + ".".join(self.prerelease)
        if self.build:
            s += "+" + self.build
        return s


def parse_version(text: str) -> Version | None:
    """``"v1.4.2-rc.1+build.5"`` -> Version; None when the text is not a version (most tags are not)."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        return None
    major, minor, patch, pre, build = m.groups()
    prerelease = tuple(pre.split(".")) if pre else ()
    # SemVer forbids leading zeros in numeric pre-release identifiers; treat such tags as non-versions.
    if any(p.isdigit() and len(p) > 1 and p.startswith("0") for p in prerelease):
        return None
    return Version(int(major), int(minor or 0), int(patch or 0), prerelease, build or "", text)


# --- ranges -----------------------------------------------------------------------------------

_OPS = ("<=", ">=", "!=", "<", ">", "=")
_PARTIAL_RE = re.compile(
    r"^[vV]?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)


@dataclass(frozen=True)
class Comparator:
    op: str  # one of _OPS
    version: Version

    def matches(self, v: Version) -> bool:
        k, c = v._key(), self.version._key()
        return {"<": k < c, "<=": k <= c, ">": k > c, ">=": k >= c, "=": k == c, "!=": k != c}[self.op]

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True)
class Range:
    """An OR of AND-sets of comparators. An empty AND-set matches every release."""

    sets: tuple[tuple[Comparator, ...], ...]
    text: str = ""
    mentions_prerelease: bool = False  # the text names a pre-release, so pre-releases may match

    def matches(self, v: Version) -> bool:
        if v.prerelease and not self.mentions_prerelease:
            return False
        return any(all(c.matches(v) for c in s) for s in self.sets)

    def __str__(self) -> str:
        return self.text or " || ".join(" ".join(map(str, s)) or "*" for s in self.sets)


def parse_range(text: str) -> Range:
    """Parse a range; raises ValueError naming the offending part."""
    if not text.strip():
        raise ValueError("empty range (use \"*\" for any release)")
    sets = []
    for alt in text.split("||"):
        alt = alt.strip()
        if not alt:
            raise ValueError(f"empty alternative in {text!r}")
        sets.append(_parse_set(alt))
    return Range(tuple(sets), text.strip(), bool(re.search(r"\d-[0-9A-Za-z]", text)))


def _parse_set(text: str) -> tuple[Comparator, ...]:
    # Hyphen range: "1.2 - 1.4.5" (spaces around the hyphen are required, as in npm).
    m = re.fullmatch(r"(\S+)\s+-\s+(\S+)", text)
    if m:
        lo, hi = _partial(m.group(1)), _partial(m.group(2))
        out = [Comparator(">=", _floor(lo))]
        out += _upper_inclusive(hi)
        return tuple(out)
    # Join operators to their version ("> = 1.2" and ">= 1.2" both occur in the wild), split on space/comma.
    norm = re.sub(r"(<=|>=|!=|<|>|=|\^|~>|~)\s+", r"\1", text.replace(",", " "))
    out = []
    for tok in norm.split():
        out.extend(_parse_comparator(tok))
    return tuple(out)


_Partial = tuple[int | None, int | None, int | None, tuple[str, ...]]


def _partial(tok: str) -> _Partial:
    m = _PARTIAL_RE.match(tok)
    if not m:
        raise ValueError(f"{tok!r} is not a version")
    parts: list[int | None] = []
    wild = False
    for g in m.groups()[:3]:
        if g is None or g in "xX*":
            wild = True
            parts.append(None)
        elif wild:
            raise ValueError(f"{tok!r}: a number after a wildcard")
        else:
            parts.append(int(g))
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    if pre and None in parts:
        raise ValueError(f"{tok!r}: a pre-release needs a full version")
    return parts[0], parts[1], parts[2], pre


def _floor(p: _Partial) -> Version:
    return Version(p[0] or 0, p[1] or 0, p[2] or 0, p[3])


def _ceiling_exclusive(p: _Partial) -> Version | None:
    """The first version above a partial: 1.4 -> 1.5.0-0 (the -0 keeps 1.5.0 pre-releases out too)."""
    major, minor, _patch, _ = p
    if major is None:
        return None
    if minor is None:
        return Version(major + 1, 0, 0, ("0",))
    return Version(major, minor + 1, 0, ("0",))


def _upper_inclusive(p: _Partial) -> list[Comparator]:
    if p[0] is None:
        return []
    if p[1] is None or p[2] is None:
        c = _ceiling_exclusive(p)
        return [Comparator("<", c)] if c else []
    return [Comparator("<=", _floor(p))]


def _parse_comparator(tok: str) -> list[Comparator]:
    if tok in ("*", "x", "X"):
        return []
    if tok.startswith("^"):
        return _caret(_partial(tok[1:]))
    if tok.startswith(("~>", "~")):
        return _tilde(_partial(tok[2:] if tok.startswith("~>") else tok[1:]))
    op = next((o for o in _OPS if tok.startswith(o)), "=")
    rest = tok[len(op):] if tok.startswith(op) else tok
    if not rest:
        raise ValueError(f"{tok!r}: operator without a version")
    p = _partial(rest)
    if p[0] is None:  # ">=*" and the like
        return [] if op in ("=", ">=", "<=") else [Comparator("<", Version(0, 0, 0, ("0",)))]
    full = None not in p[:3]
    if op == "=":
        if full:
            return [Comparator("=", _floor(p))]
        c = _ceiling_exclusive(p)
        return [Comparator(">=", _floor(p))] + ([Comparator("<", c)] if c else [])
    if op == "!=":
        if not full:
            raise ValueError(f"{tok!r}: != needs a full version")
        return [Comparator("!=", _floor(p))]
    if full:
        return [Comparator(op, _floor(p))]
    # Partial with an inequality: >1.4 means >=1.5.0, <=1.4 means <1.5.0, >=1.4 / <1.4 use the floor.
    if op == ">=":
        return [Comparator(">=", _floor(p))]
    if op == "<":
        f = _floor(p)
        return [Comparator("<", Version(f.major, f.minor, f.patch, ("0",)))]
    c = _ceiling_exclusive(p)
    assert c is not None
    return [Comparator(">=" if op == ">" else "<", c)]


def _caret(p: _Partial) -> list[Comparator]:
    """^1.2.3 := >=1.2.3 <2.0.0; ^0.2.3 := >=0.2.3 <0.3.0; ^0.0.3 := >=0.0.3 <0.0.4."""
    major, minor, patch, _pre = p
    lo = Comparator(">=", _floor(p))
    if major is None:
        return []
    if major > 0 or minor is None:
        hi = Version(major + 1, 0, 0, ("0",))
    elif minor > 0 or patch is None:
        hi = Version(0, minor + 1, 0, ("0",))
    else:
        hi = Version(0, 0, patch + 1, ("0",))
    return [lo, Comparator("<", hi)]


def _tilde(p: _Partial) -> list[Comparator]:
    """~1.2.3 := >=1.2.3 <1.3.0; ~1.2 := >=1.2.0 <1.3.0; ~1 := >=1.0.0 <2.0.0."""
    major, minor, _patch, _ = p
    if major is None:
        return []
    lo = Comparator(">=", _floor(p))
    hi = Version(major + 1, 0, 0, ("0",)) if minor is None else Version(major, minor + 1, 0, ("0",))
    return [lo, Comparator("<", hi)]


def latest(tags: list[str] | tuple[str, ...], rng: Range) -> tuple[str, Version] | None:
    """The highest tag (as written) whose version satisfies the range. Ties (v1.2 vs 1.2.0) go to the longer tag."""
    best: tuple[str, Version] | None = None
    for t in tags:
        v = parse_version(t)
        if v is None or not rng.matches(v):
            continue
        if best is None or v > best[1] or (v == best[1] and (len(t), t) > (len(best[0]), best[0])):
            best = (t, v)
    return best
