"""``POST /hooks/git``: push webhooks from GitHub, GitLab and Gitea/Forgejo, so a push is fetched at
once instead of at the next ``poll_interval``.

Verification, per provider, against each repository's ``webhook_secret_file`` (read at each
request, so rotating the file needs no reload), compared in constant time:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (``X-GitHub-Event``);
- GitLab: ``X-Gitlab-Token: <the secret itself>`` (``X-Gitlab-Event``);
- Gitea / Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature: <hex HMAC-SHA256 of the body>``.

The signature is checked before the body is parsed. A verified push is matched to the configured
repositories by URL (scheme, credentials, port and a trailing ``.git`` ignored, so the https and
ssh URLs of one project match), and the daemon fetches them. Everything else is rejected and
counted in ``driftd_webhook_requests_total{provider, result}``. Two token buckets answer 429 past
their rate, and the signature is verified before either is spent: verified requests draw on one,
rejected ones (unknown sender, too large, bad signature) on the other, so an unauthenticated flood
never uses up the budget of real pushes. Neither the secret nor the body is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from . import metrics
from .log import get_logger

log = get_logger("driftd.hooks")

MAX_BODY = 1 << 20  # GitHub caps payloads at 25 MB but push payloads are far smaller; larger is refused


class Provider(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"
    UNKNOWN = "unknown"


class Result(StrEnum):
    """Closed vocabulary: the ``result`` label of driftd_webhook_requests_total."""

    ACCEPTED = "accepted"  # a verified push of a configured repository: fetched now
    IGNORED = "ignored"  # verified, but not a push (ping, issue...) or no repository matches
    UNVERIFIED = "unverified"  # signature or token missing or wrong
    UNKNOWN = "unknown"  # not a request of a known provider
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    BAD_REQUEST = "bad_request"  # verified, but the body is not the JSON the provider sends


@dataclass(frozen=True)
class HookRepository:
    """A repository webhooks may wake: its config name, URL and the file holding the shared secret."""

    name: str
    url: str
    secret_file: Path


def normalize_url(url: str) -> str:
    """``host/path`` in lower case, without scheme, credentials, port, trailing ``/`` or ``.git``."""
    url = url.strip()
    m = re.match(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)$", url)  # scp-like git@host:org/repo.git
    if m and "://" not in url:
        host, path = m.group(1), m.group(2)
    else:
        try:
            parts = urlsplit(url)
        except ValueError:
            return ""
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{host.lower()}/{path}"


def _payload_urls(data: Any) -> set[str]:
    out: set[str] = set()
    if not isinstance(data, dict):
        return out
    for section in ("repository", "project"):
        r = data.get(section)
        if isinstance(r, dict):
            for k in ("clone_url", "ssh_url", "git_url", "html_url", "url", "git_http_url", "git_ssh_url",
                      "http_url", "web_url", "homepage"):
                v = r.get(k)
                if isinstance(v, str) and v:
                    out.add(normalize_url(v))
    out.discard("")
    return out


class TokenBucket:
    """``rate`` requests a second on average, bursts of ``burst``; monotonic clock."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens = float(burst)
        self.t = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _provider(h: Any) -> Provider:
    if "X-GitHub-Event" in h or "X-Hub-Signature-256" in h:
        return Provider.GITHUB
    if "X-Gitlab-Event" in h or "X-Gitlab-Token" in h:
        return Provider.GITLAB
    if any(k in h for k in ("X-Gitea-Event", "X-Forgejo-Event", "X-Gitea-Signature", "X-Forgejo-Signature")):
        return Provider.GITEA
    return Provider.UNKNOWN


def _hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(provider: Provider, headers: Any, body: bytes, secret: bytes) -> bool:
    """Constant-time comparison of what the provider sent with what ``secret`` gives."""
    if not secret:
        return False
    if provider is Provider.GITHUB:
        sent = headers.get("X-Hub-Signature-256", "")
        return sent.startswith("sha256=") and hmac.compare_digest(sent[7:].lower().encode(),
                                                                  _hmac_hex(secret, body).encode())
    if provider is Provider.GITLAB:
        return hmac.compare_digest(headers.get("X-Gitlab-Token", "").encode(), secret)
    if provider is Provider.GITEA:
        sent = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature") or ""
        return hmac.compare_digest(sent.lower().removeprefix("sha256=").encode(), _hmac_hex(secret, body).encode())
    return False


def _is_push(provider: Provider, headers: Any) -> bool:
    if provider is Provider.GITHUB:
        return bool(headers.get("X-GitHub-Event") == "push")
    if provider is Provider.GITLAB:
        return headers.get("X-Gitlab-Event") in ("Push Hook", "Tag Push Hook", "System Hook")
    return bool((headers.get("X-Gitea-Event") or headers.get("X-Forgejo-Event")) == "push")


def _read_secret(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as e:
        log.warning("hooks.secret_unreadable", file=str(path), error=e.strerror or type(e).__name__)
        return b""


class GitHooks:
    """The ``/hooks/git`` handler. ``repositories()`` is read at each request (config reloads apply);
    ``on_push(name)`` asks the daemon to fetch repository ``name`` now (it must not block)."""

    def __init__(self, repositories: Callable[[], Sequence[HookRepository]], on_push: Callable[[str], None], *,
                 rate: float = 5.0, burst: int = 20) -> None:
        self.repositories = repositories
        self.on_push = on_push
        self.bucket = TokenBucket(rate, burst)
        self.failures = TokenBucket(rate, burst)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/git", self.handle)

    def _done(self, provider: Provider, result: Result, status: int, text: str) -> web.Response:
        metrics.webhook_requests.labels(str(provider), str(result)).inc()
        if result not in (Result.ACCEPTED, Result.IGNORED):
            log.info("hooks.rejected", provider=str(provider), result=str(result), status=status)
        return web.json_response({"result": str(result), "detail": text}, status=status)

    def _refused(self, provider: Provider, result: Result, status: int, text: str) -> web.Response:
        if not self.failures.take():
            return self._done(provider, Result.RATE_LIMITED, 429, "too many rejected webhook requests; retry later")
        return self._done(provider, result, status, text)

    async def handle(self, request: web.Request) -> web.Response:
        provider = _provider(request.headers)
        if provider is Provider.UNKNOWN:
            return self._refused(provider, Result.UNKNOWN, 400,
                                 "not a GitHub, GitLab or Gitea/Forgejo webhook (no event/signature header)")
        too_large = f"body larger than {MAX_BODY} bytes"
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._refused(provider, Result.TOO_LARGE, 413, too_large)
        try:
            # read(): the server's connection guard may have read (and cached) it already, under its
            # body timeout; the application's client_max_size caps it too.
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refused(provider, Result.TOO_LARGE, 413, too_large)
        if len(body) > MAX_BODY:
            return self._refused(provider, Result.TOO_LARGE, 413, too_large)
        repos = self.repositories()
        verified = [r for r in repos if verify(provider, request.headers, body, _read_secret(r.secret_file))]
        if not verified:
            return self._refused(provider, Result.UNVERIFIED, 401, "signature or token does not verify")
        if not self.bucket.take():
            return self._done(provider, Result.RATE_LIMITED, 429, "too many webhook requests; retry later")
        if provider is Provider.GITHUB and request.headers.get("X-GitHub-Event") == "ping":
            return self._done(provider, Result.IGNORED, 200, "pong")
        if not _is_push(provider, request.headers):
            return self._done(provider, Result.IGNORED, 202, "not a push event")
        try:
            data = json.loads(body)
        except ValueError:
            return self._done(provider, Result.BAD_REQUEST, 400, "body is not JSON")
        urls = _payload_urls(data)
        matched = [r for r in verified if normalize_url(r.url) in urls]
        if not matched:
            return self._done(provider, Result.IGNORED, 202, "no configured repository matches this push")
        for r in matched:
            log.info("hooks.push", provider=str(provider), repository=r.name, ref=str(data.get("ref", ""))[:200])
            self.on_push(r.name)
        return self._done(provider, Result.ACCEPTED, 202, "fetching " + ", ".join(r.name for r in matched))
