"""OCI distribution API client (aiohttp): tag lists and manifest digests, with auth, paging and backoff.

One :class:`RegistryClient` per registry host shares one aiohttp session (held by
:class:`Registries`) and limits its own requests in flight. Authentication follows the
registry's ``WWW-Authenticate`` challenge: basic credentials, or a bearer token fetched from the
challenge's realm for the repository scope and cached until it expires. Credentials come from the
config (``username`` + ``password_file``) or a docker ``config.json``; they are never logged.

ECR is read through the AWS API instead (``driftd.targets.aws.ecr_images``); both implement
:class:`TagSource`, and the engine picks one per image.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import email.utils
import hashlib
import json
import random
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin

import aiohttp
import anyio

from ..config import RegistrySettings
from ..errors import SourceError
from ..log import get_logger
from ..metrics import api_requests
from ..policy.images import DOCKER_HUB, DOCKER_HUB_API

log = get_logger(__name__)

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
))
_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


# Requests made on behalf of one caller (a poll of one environment), even while other polls share the
# clients: set around the poll; child tasks copy the context and so share the same list.
_counter: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("driftd_registry_requests",
                                                                            default=None)


@contextlib.contextmanager
def count_requests() -> Iterator[list[int]]:
    """``with count_requests() as n: ...`` then ``n[0]`` is the registry requests made inside."""
    c = [0]
    token = _counter.set(c)
    try:
        yield c
    finally:
        _counter.reset(token)


class TagSource(Protocol):
    """Where an image's tags and digests come from: an OCI registry or the ECR API."""

    async def list_tags(self, repository: str) -> list[str]:
        """Every tag of the repository. Raises SourceError (retryable when it may pass)."""
        ...

    async def get_digest(self, repository: str, reference: str) -> str | None:
        """The manifest digest of a tag or digest reference; None when it does not exist."""
        ...


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def _docker_config_keys(host: str) -> list[str]:
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"):
        keys += ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
    return keys


def load_credentials(settings: RegistrySettings) -> Credentials | None:
    """Config keys first (username + password_file), then a docker config.json's ``auths`` entry."""
    subject = f"registry {settings.host}"
    if settings.password_file is not None:
        try:
            password = settings.password_file.read_text().strip()
        except OSError as e:
            raise SourceError(f"cannot read password_file: {e.strerror}", subject=subject, retryable=False) from e
        return Credentials(settings.username or "", password)
    if settings.docker_config is not None:
        return _from_docker_config(settings.docker_config, settings.host, subject)
    return None


def _from_docker_config(path: Path, host: str, subject: str) -> Credentials | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read docker config {str(path)!r}: {e}", subject=subject, retryable=False) from e
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in _docker_config_keys(host):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, _, pw = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError) as e:
                raise SourceError(f"{str(path)!r}: auths[{key!r}].auth is not base64 user:password",
                                  subject=subject, retryable=False) from e
            return Credentials(user, pw)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _CHALLENGE_PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After as seconds or an HTTP date; the default when absent or unreadable."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


@dataclass
class _Token:
    value: str
    expires: float  # monotonic


class RegistryClient:
    """One registry host. Implements :class:`TagSource`."""

    def __init__(self, host: str, session: aiohttp.ClientSession, *, credentials: Credentials | None = None,
                 insecure: bool | None = None, concurrency: int = 4, page_size: int = 1000,
                 max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 timeout: float = 30.0) -> None:
        self.host = DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host
        if insecure is None:
            insecure = self.host.split(":")[0] in ("localhost", "127.0.0.1", "::1")
        self.base = f"{'http' if insecure else 'https'}://{self.host}"
        self._session = session
        self._credentials = credentials
        self._limit = anyio.Semaphore(concurrency)
        self.page_size = page_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._scheme: str | None = None  # learned from the first challenge: "basic" or "bearer"
        self._challenge: dict[str, str] = {}
        self._tokens: dict[str, _Token] = {}
        self.requests = 0  # every HTTP request sent, including token fetches and retries
        self.throttled = 0

    # -- TagSource ---------------------------------------------------------------------

    async def list_tags(self, repository: str) -> list[str]:
        tags: list[str] = []
        have: set[str] = set()
        url: str | None = f"{self.base}/v2/{repository}/tags/list?{urlencode({'n': self.page_size})}"
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            status, headers, body = await self._request("GET", url, repository, "tags_list")
            if status == 404:
                raise SourceError("repository not found", subject=self._subject(repository), retryable=False)
            self._raise_for(status, repository, "listing tags")
            try:
                page = json.loads(body).get("tags") or []
            except (ValueError, AttributeError) as e:
                raise SourceError("tags list is not JSON", subject=self._subject(repository)) from e
            new = [t for t in page if isinstance(t, str) and t not in have]
            have.update(new)
            tags.extend(new)
            m = _LINK_RE.search(headers.get("Link", ""))
            if m:
                url = urljoin(self.base + "/", m.group(1))
            elif len(page) == self.page_size and new:
                # A full page without a Link header: the registry honours n but does not link; ask for the rest.
                # (distribution 2.8 ignores n for tags and returns everything at once: then len(page) != n.)
                url = f"{self.base}/v2/{repository}/tags/list?{urlencode({'n': self.page_size, 'last': page[-1]})}"
            else:
                url = None
        return tags

    async def get_digest(self, repository: str, reference: str) -> str | None:
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        status, headers, _ = await self._request("HEAD", url, repository, "manifest_head")
        if status == 404:
            return None
        digest = headers.get("Docker-Content-Digest")
        if status == 200 and digest:
            return digest
        if status not in (200, 405, 400):
            self._raise_for(status, repository, f"reading manifest {reference}")
        # Some registries answer HEAD without the digest header: GET and hash the body as sent.
        status, headers, body = await self._request("GET", url, repository, "manifest_get")
        if status == 404:
            return None
        self._raise_for(status, repository, f"reading manifest {reference}")
        return headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    # -- HTTP --------------------------------------------------------------------------

    def _subject(self, repository: str) -> str:
        return f"{self.host}/{repository}"

    def _raise_for(self, status: int, repository: str, what: str) -> None:
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise SourceError(f"access denied {what} (HTTP {status}); check the registry credentials",
                              subject=self._subject(repository), retryable=False)
        raise SourceError(f"HTTP {status} {what}", subject=self._subject(repository),
                          retryable=status >= 500 or status == 429)

    async def _request(self, method: str, url: str, repository: str,
                       operation: str) -> tuple[int, Mapping[str, str], bytes]:
        """Send with auth; answer one challenge; retry 429/502/503/504 and connection errors with backoff."""
        headers = {"Accept": MANIFEST_ACCEPT if "/manifests/" in url else "application/json"}
        challenged = False
        attempt = 0
        while True:
            auth = await self._auth_header(repository)
            if auth:
                headers["Authorization"] = auth
            try:
                status, resp_headers, body = await self._send(method, url, headers, operation)
            except (aiohttp.ClientError, TimeoutError) as e:
                # A refused or timed-out connection rarely heals within one poll: retry briefly, the next poll retries.
                if attempt >= min(2, self.max_retries):
                    raise SourceError(f"{type(e).__name__}: {e}", subject=self._subject(repository)) from e
                attempt += 1
                await anyio.sleep(self._delay(attempt, None))
                continue
            if status == 401 and not challenged and "WWW-Authenticate" in resp_headers:
                challenged = True
                await self._on_challenge(resp_headers["WWW-Authenticate"], repository)
                continue
            if status in (429, 502, 503, 504) and attempt < self.max_retries:
                attempt += 1
                if status == 429:
                    self.throttled += 1
                delay = self._delay(attempt, resp_headers.get("Retry-After"))
                log.info("registry.backoff", host=self.host, status=status, delay=round(delay, 2), attempt=attempt)
                await anyio.sleep(delay)
                continue
            return status, resp_headers, body

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        exp = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        base = retry_after_seconds(retry_after, exp)
        return min(self.max_backoff, base) + random.uniform(0, self.backoff / 2)  # jitter spreads the herd

    async def _send(self, method: str, url: str, headers: Mapping[str, str],
                    operation: str) -> tuple[int, Mapping[str, str], bytes]:
        async with self._limit:
            self.requests += 1
            c = _counter.get()
            if c is not None:
                c[0] += 1
            try:
                async with self._session.request(method, url, headers=headers, timeout=self._timeout,
                                                 allow_redirects=True) as resp:
                    body = await resp.read() if method != "HEAD" else b""
                    api_requests.labels(target="registry", operation=operation, code=str(resp.status)).inc()
                    return resp.status, resp.headers, body
            except (aiohttp.ClientError, TimeoutError):
                api_requests.labels(target="registry", operation=operation, code="error").inc()
                raise

    # -- auth --------------------------------------------------------------------------

    def _scope(self, repository: str) -> str:
        return f"repository:{repository}:pull"

    async def _auth_header(self, repository: str) -> str | None:
        if self._scheme == "basic" and self._credentials:
            return self._credentials.basic()
        if self._scheme == "bearer":
            tok = self._tokens.get(self._scope(repository))
            if tok is None or tok.expires <= time.monotonic():
                tok = await self._fetch_token(repository)
            return f"Bearer {tok.value}" if tok.value else None
        return None

    async def _on_challenge(self, header: str, repository: str) -> None:
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if self._credentials is None:
                raise SourceError("the registry requires credentials (basic auth) and none are configured",
                                  subject=self._subject(repository), retryable=False)
            self._scheme = "basic"
        elif scheme == "bearer" and params.get("realm"):
            self._scheme, self._challenge = "bearer", params
            self._tokens.pop(self._scope(repository), None)
        else:
            raise SourceError(f"unsupported auth challenge {scheme!r}", subject=self._subject(repository),
                              retryable=False)

    async def _fetch_token(self, repository: str) -> _Token:
        """GET realm?service=...&scope=repository:<name>:pull, with basic credentials when configured."""
        scope = self._scope(repository)
        query = {"scope": scope}
        if self._challenge.get("service"):
            query["service"] = self._challenge["service"]
        url = self._challenge["realm"] + ("&" if "?" in self._challenge["realm"] else "?") + urlencode(query)
        headers = {"Accept": "application/json"}
        if self._credentials:
            headers["Authorization"] = self._credentials.basic()
        attempt = 0
        while True:
            try:
                status, resp_headers, body = await self._send("GET", url, headers, "token")
            except (aiohttp.ClientError, TimeoutError) as e:
                raise SourceError(f"token service unreachable: {type(e).__name__}",
                                  subject=self._subject(repository)) from e
            if status == 429 and attempt < self.max_retries:
                attempt += 1
                await anyio.sleep(self._delay(attempt, resp_headers.get("Retry-After")))
                continue
            break
        if status != 200:
            raise SourceError(f"token service answered HTTP {status}", subject=self._subject(repository),
                              retryable=status >= 500 or status == 429)
        try:
            data: dict[str, Any] = json.loads(body)
            value = str(data.get("token") or data.get("access_token") or "")
            ttl = float(data.get("expires_in") or 60)
        except (ValueError, TypeError, AttributeError) as e:
            raise SourceError("token service answer is not JSON", subject=self._subject(repository)) from e
        # Renew a little early so a token never expires between check and use.
        tok = _Token(value, time.monotonic() + max(1.0, ttl - min(30.0, ttl / 10)))
        self._tokens[scope] = tok
        return tok


class Registries:
    """One shared aiohttp session and one client per registry host, configured from ``[[registries]]``."""

    def __init__(self, settings: Mapping[str, RegistrySettings] | None = None, *, page_size: int = 1000,
                 max_retries: int = 5, backoff: float = 0.5) -> None:
        self._settings = dict(settings or {})
        self._clients: dict[str, RegistryClient] = {}
        self._session: aiohttp.ClientSession | None = None
        self._opts: dict[str, Any] = {"page_size": page_size, "max_retries": max_retries, "backoff": backoff}

    def settings(self, host: str) -> RegistrySettings | None:
        return self._settings.get(host) or (self._settings.get(DOCKER_HUB) if host == DOCKER_HUB_API else None)

    def client(self, host: str) -> RegistryClient:
        c = self._clients.get(host)
        if c is None:
            if self._session is None:
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
            s = self.settings(host)
            c = RegistryClient(host, self._session, credentials=load_credentials(s) if s else None,
                               insecure=s.insecure if s and s.insecure else None,
                               concurrency=s.concurrency if s else 4, **self._opts)
            self._clients[host] = c
        return c

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self._clients.values())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._clients.clear()

    async def __aenter__(self) -> Registries:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
