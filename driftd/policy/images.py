"""Image references and tag policies (pure).

A policy picks the latest tag of a repository the way Flux's ImagePolicy does:
drop excluded tags (signatures and attestations: ``*.sig``, ``*.att``, ``*.sbom``),
keep tags matching the optional ``pattern`` and take its sort key from the first
named group (or the first group, or the whole match), then order by ``semver``
(within a range), ``alphabetical`` or ``numerical``; ``order = "asc"`` picks the
highest, ``"desc"`` the lowest.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..config import ImagePolicySettings
from ..semver import Range, parse_range, parse_version

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class ImageRef:
    """``registry/repository[:tag][@digest]`` with Docker Hub's defaults applied.

    ``registry`` is the host as users write it (``docker.io`` for Docker Hub), ``repository`` the
    path inside it (``library/nginx`` for a single-component Hub name).
    """

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """Canonical ``registry/repository``: how two spellings of one image compare equal."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse_image_ref(text: str) -> ImageRef:
    """Parse an image reference; raises ValueError saying what is wrong.

    The first path component is a registry host when it has a '.' or ':' or is ``localhost``
    (the docker CLI's rule); otherwise the image lives on Docker Hub.
    """
    s = text.strip()
    if not s or any(c.isspace() for c in s):
        raise ValueError(f"{text!r} is not an image reference")
    digest = ""
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"{text!r}: {digest!r} is not a digest (expected algorithm:hex)")
    tag = ""
    slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > slash:
        s, tag = s[:colon], s[colon + 1:]
        if not _TAG_RE.match(tag):
            raise ValueError(f"{text!r}: {tag!r} is not a valid tag")
    first, sep, rest = s.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
    else:
        registry, repo = DOCKER_HUB, s
    if registry in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repo:
        repo = f"library/{repo}"
    if not repo or not re.match(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$",
                                repo):
        raise ValueError(f"{text!r}: {repo!r} is not a valid repository name (lowercase, digits, . _ - /)")
    return ImageRef(registry, repo, tag, digest)


def same_image(a: str, b: ImageRef) -> bool:
    """Whether reference text ``a`` names the repository ``b`` (any tag or digest)."""
    try:
        return parse_image_ref(a).name == b.name
    except ValueError:
        return False


# --- policies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    tag: str
    key: str  # the sort key the policy compared (the version, the pattern group)


@dataclass(frozen=True)
class ImagePolicy:
    """A compiled ``[[environments.images]]`` entry."""

    name: str
    image: ImageRef
    kind: str  # semver | alphabetical | numerical
    range: Range | None
    order: str
    pattern: re.Pattern[str] | None
    exclude: tuple[str, ...]
    action: str

    def candidates(self, tags: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
        """(tag, sort key) for every tag the policy considers, before ordering."""
        out = []
        for t in tags:
            if any(fnmatch.fnmatchcase(t, x) for x in self.exclude):
                continue
            key = t
            if self.pattern is not None:
                m = self.pattern.search(t)
                if not m:
                    continue
                key = _sort_key(m)
            out.append((t, key))
        return out

    def select(self, tags: list[str] | tuple[str, ...]) -> Selection | None:
        """The latest tag under this policy, or None when no tag qualifies."""
        cands = self.candidates(tags)
        if self.kind == "semver":
            assert self.range is not None
            best: tuple[Any, ...] | None = None
            for t, key in cands:
                v = parse_version(key)
                if v is None or not self.range.matches(v):
                    continue
                # Equal versions (v1.2 and 1.2.0): prefer the longer, then the lexically higher tag, deterministically.
                rank = (v, len(t), t)
                if best is None or rank > best[0]:
                    best = (rank, t, key)
            return Selection(best[1], best[2]) if best else None
        if self.kind == "numerical":
            nums = []
            for t, key in cands:
                try:
                    nums.append((float(key), t, key))
                except ValueError:
                    continue
            if not nums:
                return None
            pick = max(nums) if self.order == "asc" else min(nums)
            return Selection(pick[1], pick[2])
        if not cands:
            return None
        ranked = sorted((key, t) for t, key in cands)
        k, t = ranked[-1] if self.order == "asc" else ranked[0]
        return Selection(t, k)

    def is_newer(self, candidate_key: str, current_tag: str) -> bool:
        """Whether the selected key is ahead of the tag the environment runs, under this policy's ordering."""
        current = self.candidates([current_tag])
        if not current:
            return True  # the running tag is outside the policy (e.g. "latest"): the policy's pick is the update
        cur_key = current[0][1]
        if self.kind == "semver":
            a, b = parse_version(candidate_key), parse_version(cur_key)
            if a is None:
                return False
            return b is None or a > b
        if self.kind == "numerical":
            try:
                fa, fb = float(candidate_key), float(cur_key)
            except ValueError:
                return True
            return fa > fb if self.order == "asc" else fa < fb
        return candidate_key > cur_key if self.order == "asc" else candidate_key < cur_key


def _sort_key(m: re.Match[str]) -> str:
    named = [v for v in m.groupdict().values() if v is not None]
    if named:
        return named[0]
    if m.re.groups and m.group(1) is not None:
        return m.group(1)
    return m.group(0)


def compile_policy(s: ImagePolicySettings) -> ImagePolicy:
    """Raises ValueError for an invalid image, range or pattern (config already checks the last two)."""
    return ImagePolicy(
        name=s.name,
        image=parse_image_ref(s.image),
        kind=s.policy,
        range=parse_range(s.range or "*") if s.policy == "semver" else None,
        order=s.order,
        pattern=re.compile(s.pattern) if s.pattern else None,
        exclude=s.exclude,
        action=s.action,
    )


# --- findings ---------------------------------------------------------------------------------


class FindingKind(StrEnum):
    """What an image poll found. Values become alert and metric label values: keep them stable."""

    UPDATE_AVAILABLE = "update_available"  # the environment runs an older version than the policy's latest
    UP_TO_DATE = "up_to_date"
    TAG_MOVED = "tag_moved"  # a tag's digest changed since it was last seen
    DIGEST_MISSING = "digest_missing"  # an image pinned by digest no longer exists in the registry
    WRITTEN_BACK = "written_back"  # the new version was committed to the environment's branch
    WRITE_BACK_FAILED = "write_back_failed"
    # observe mode (or dry_run): what write-back would have committed; nothing was pushed to Git
    WOULD_WRITE_BACK = "would_write_back"
    NO_MATCH = "no_match"  # no tag satisfies the policy
    ERROR = "error"  # the registry could not be read


@dataclass(frozen=True)
class ImageFinding:
    environment: str
    policy: str
    image: str  # canonical registry/repository
    kind: FindingKind
    current: str | None = None  # tag (or digest) the environment declares
    latest: str | None = None  # tag the policy selected
    tag: str | None = None  # TAG_MOVED: the tag concerned
    old_digest: str | None = None
    new_digest: str | None = None
    revision: str | None = None  # WRITTEN_BACK: the commit made; WOULD_WRITE_BACK: the head it would edit
    message: str = ""
    at: datetime | None = None

    @property
    def alerting(self) -> bool:
        """Kinds that deserve an alert (in alert and enforce modes)."""
        return self.kind in (FindingKind.UPDATE_AVAILABLE, FindingKind.TAG_MOVED, FindingKind.DIGEST_MISSING,
                             FindingKind.WRITE_BACK_FAILED)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"environment": self.environment, "policy": self.policy, "image": self.image,
                             "kind": str(self.kind)}
        for k in ("current", "latest", "tag", "old_digest", "new_digest", "revision"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.message:
            d["message"] = self.message
        if self.at is not None:
            d["at"] = self.at.isoformat().replace("+00:00", "Z")
        return d
