"""One AWS account: credentials, pooled clients, bounded concurrency, backoff, and call accounting.

The only module that builds aioboto3/aiobotocore objects. Adapters call
``AccountSession.call(service, operation, **params)`` and see ``ApiError``
(with the AWS error code), ``PermissionDenied`` or ``Throttled``; never a
botocore exception.

Credentials: the default chain, a ``profile``, ``role_arn`` (STS AssumeRole
on top of the chain, refreshed by botocore's refreshable credentials before
they expire) or ``web_identity_token_file`` + ``role_arn``
(AssumeRoleWithWebIdentity, the sidecar/IRSA case).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from aiobotocore.credentials import (
    AioAssumeRoleCredentialFetcher,
    AioAssumeRoleWithWebIdentityCredentialFetcher,
    AioDeferredRefreshableCredentials,
)
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from ...config import AwsAccountSettings
from ...errors import PermissionDenied, TargetError, Throttled
from ...journal import journaled
from ...log import get_logger
from ...metrics import api_requests
from .errors import ApiError

log = get_logger(__name__)

THROTTLE_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                            "TooManyRequestsException", "RequestThrottled", "RequestThrottledException",
                            "SlowDown", "ProvisionedThroughputExceededException", "PriorRequestNotComplete"})
TRANSIENT_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "InternalServerError",
                             "RequestTimeout", "RequestTimeoutException"})
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
                          "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken"})

# Per-check call counter: set by the target around one check; copies of the context in child tasks
# share the same Counter object, so every call made on behalf of the check lands in it.
_check_calls: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar("driftd_aws_calls", default=None)


@contextlib.contextmanager
def count_calls() -> Iterator[Counter[str]]:
    """Count ``service:Operation`` calls made in this context (and tasks started from it)."""
    c: Counter[str] = Counter()
    token = _check_calls.set(c)
    try:
        yield c
    finally:
        _check_calls.reset(token)


# Operations that only read (every other one is a write, journaled).
_READ_PREFIXES = ("describe_", "get_", "list_", "head_", "lookup_", "batch_get_", "query", "scan", "search_",
                  "generate_presigned")


def _subject(params: Mapping[str, Any]) -> str:
    """What a write concerns when the caller did not say: its naming parameter."""
    for k in ("Name", "Bucket", "GroupId", "RoleName", "FunctionName", "TableName", "AutoScalingGroupName",
              "HostedZoneId", "repositoryName", "ResourceId", "Resources"):
        if k in params:
            return f"{k}={params[k]}"[:200]
    return "(unnamed)"


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog: "Exponential Backoff and Jitter")."""

    def __init__(self, attempts: int = 6, base: float = 0.2, cap: float = 10.0) -> None:
        self.attempts, self.base, self.cap = attempts, base, cap

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))


class AccountSession:
    """Clients for one ``[[aws_accounts]]`` entry, created lazily, pooled per (service, region), closed by aclose()."""

    def __init__(self, settings: AwsAccountSettings, *, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.name = settings.name
        self.region = settings.region
        self.backoff = backoff or Backoff()
        self.limiter = anyio.CapacityLimiter(max(1, settings.concurrency))
        self.seen_operations: set[str] = set()  # "service:Operation", for the permissions test
        self._session: aioboto3.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._lock = anyio.Lock()
        self._hooks: list[Callable[[Any], None]] = []

    # --- credentials -------------------------------------------------------------------------

    async def _build_session(self) -> aioboto3.Session:
        s = self.settings
        base = AioSession(profile=s.profile) if s.profile else AioSession()
        if not s.role_arn:
            if s.web_identity_token_file:
                raise TargetError("web_identity_token_file needs role_arn", subject=f"aws_accounts.{s.name}")
            return aioboto3.Session(botocore_session=base, region_name=s.region)
        creator = functools.partial(base.create_client, region_name=s.region, endpoint_url=s.endpoint_url)
        extra = {"RoleSessionName": f"driftd-{s.name}"[:64]}
        fetcher: Any
        if s.web_identity_token_file:
            token_file: Path = s.web_identity_token_file
            fetcher = AioAssumeRoleWithWebIdentityCredentialFetcher(
                client_creator=creator, web_identity_token_loader=lambda: token_file.read_text().strip(),
                role_arn=s.role_arn, extra_args=extra)
            method = "assume-role-with-web-identity"
        else:
            source = await base.get_credentials()
            if source is None:
                raise PermissionDenied("no source credentials to assume the role with",
                                       subject=f"aws_accounts.{s.name}")
            fetcher = AioAssumeRoleCredentialFetcher(client_creator=creator, source_credentials=source,
                                                     role_arn=s.role_arn, extra_args=extra)
            method = "assume-role"
        target = AioSession()
        # Deferred: the first call assumes the role; botocore refreshes it ahead of expiry (advisory 15 min).
        target._credentials = AioDeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                                method=method)
        return aioboto3.Session(botocore_session=target, region_name=s.region)

    # --- clients -----------------------------------------------------------------------------

    async def client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        key = (service, region)
        c = self._clients.get(key)
        if c is not None:
            return c
        async with self._lock:
            c = self._clients.get(key)
            if c is not None:
                return c
            if self._session is None:
                self._session = await self._build_session()
            extra: dict[str, Any] = {"s3": {"addressing_style": "path"}} if self.settings.endpoint_url else {}
            cfg = AioConfig(retries={"mode": "standard", "total_max_attempts": 1},  # we retry, see call()
                            max_pool_connections=max(10, self.settings.concurrency),
                            connect_timeout=10, read_timeout=60, **extra)
            c = await self._stack.enter_async_context(
                self._session.client(service, region_name=region, endpoint_url=self.settings.endpoint_url,
                                     config=cfg))
            self._register_accounting(c, service)
            for h in self._hooks:
                h(c)
            self._clients[key] = c
            return c

    def add_client_hook(self, hook: Callable[[Any], None]) -> None:
        """Run ``hook(client)`` on every client (existing and future): tests register botocore events with it."""
        self._hooks.append(hook)
        for c in self._clients.values():
            hook(c)

    def _register_accounting(self, client: Any, service: str) -> None:
        def after_call(http_response: Any, model: Any, **_: Any) -> None:
            self._account(f"{service}:{model.name}", str(getattr(http_response, "status_code", "")))

        def after_error(model: Any = None, context: Any = None, **_: Any) -> None:
            name = getattr(model, "name", None) or (context or {}).get("operation_name", "unknown")
            self._account(f"{service}:{name}", "error")

        client.meta.events.register("after-call", after_call)
        client.meta.events.register("after-call-error", after_error)

    def _account(self, operation: str, code: str) -> None:
        api_requests.labels(target="aws", operation=operation, code=code).inc()
        self.seen_operations.add(operation)
        c = _check_calls.get()
        if c is not None:
            c[operation] += 1

    # --- calls -------------------------------------------------------------------------------

    async def call(self, service: str, operation: str, *, region: str | None = None, subject: str | None = None,
                   **params: Any) -> dict[str, Any]:
        """One API call (snake_case operation) with backoff on throttling and transient errors. A call
        that changes something is journaled (driftd.journal): intent before, outcome after."""
        if operation.startswith(_READ_PREFIXES):
            return await self._call(service, operation, region=region, subject=subject, **params)
        async with journaled("aws", subject or _subject(params), f"{service}:{operation}"):
            return await self._call(service, operation, region=region, subject=subject, **params)

    async def _call(self, service: str, operation: str, *, region: str | None, subject: str | None,
                    **params: Any) -> dict[str, Any]:
        client = await self.client(service, region)
        fn = getattr(client, operation)
        for attempt in range(self.backoff.attempts):
            try:
                async with self.limiter:
                    result: dict[str, Any] = await fn(**params)
                return result
            except ClientError as e:
                err = e.response.get("Error", {})
                code = str(err.get("Code") or "Unknown")
                msg = str(err.get("Message") or e)
                status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                op = f"{service}:{e.operation_name}"
                retryable = code in THROTTLE_CODES or code in TRANSIENT_CODES or status >= 500
                if retryable and attempt + 1 < self.backoff.attempts:
                    await anyio.sleep(self.backoff.delay(attempt))
                    continue
                if code in THROTTLE_CODES or status == 429:
                    raise Throttled(f"{op} throttled ({code}) after {attempt + 1} attempts",
                                    subject=subject) from e
                if code in DENIED_CODES:
                    raise PermissionDenied(f"{op} denied: {code}: {msg}", subject=subject) from e
                raise ApiError(f"{op} failed: {code}: {msg}", code=code, operation=op, subject=subject,
                               retryable=retryable) from e
            except ParamValidationError as e:  # our request is wrong: retrying cannot help
                raise TargetError(f"{service}:{operation}: {e}", subject=subject) from e
            except BotoCoreError as e:
                if attempt + 1 < self.backoff.attempts:
                    await anyio.sleep(self.backoff.delay(attempt))
                    continue
                raise TargetError(f"{service}:{operation} failed: {e}", subject=subject, retryable=True) from e
        raise AssertionError("unreachable")

    async def paginate(self, service: str, operation: str, result_key: str, *, token_in: str, token_out: str,
                       region: str | None = None, **params: Any) -> list[Any]:
        """Every item of ``result_key`` across pages; each page is one counted call."""
        items: list[Any] = []
        token: Any = None
        while True:
            p = dict(params)
            if token:
                p[token_in] = token
            page = await self.call(service, operation, region=region, **p)
            items.extend(page.get(result_key) or [])
            token = page.get(token_out)
            if not token or (page.get("IsTruncated") is False):
                return items

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        try:
            await self._stack.aclose()
        finally:
            self._stack = contextlib.AsyncExitStack()
            clients.clear()
