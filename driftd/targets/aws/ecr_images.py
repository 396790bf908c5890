"""ECR tags and digests through the AWS API (DescribeImages), for ``[[registries]]`` with ``aws_account``.

Implements ``driftd.sources.registry.TagSource`` structurally. One paginated DescribeImages
gives every tag with its digest, so the digests of a poll's tags cost no further calls: they
are kept for ``cache_ttl`` seconds after a listing.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ...errors import SourceError
from .errors import ApiError
from .session import AccountSession

_ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


def registry_id_from_host(host: str) -> str | None:
    """``123456789012.dkr.ecr.eu-west-1.amazonaws.com`` -> ``123456789012``; None for other hosts."""
    m = _ECR_HOST_RE.match(host)
    return m.group(1) if m else None


class EcrTagSource:
    def __init__(self, session: AccountSession, host: str, *, cache_ttl: float = 30.0) -> None:
        self.session = session
        self.host = host
        self.registry_id = registry_id_from_host(host)
        self.cache_ttl = cache_ttl
        self._digests: dict[str, tuple[float, dict[str, str]]] = {}  # repository -> (listed at, tag -> digest)

    def _params(self, repository: str) -> dict[str, Any]:
        p: dict[str, Any] = {"repositoryName": repository}
        if self.registry_id:
            p["registryId"] = self.registry_id
        return p

    async def list_tags(self, repository: str) -> list[str]:
        try:
            details = await self.session.paginate("ecr", "describe_images", "imageDetails", token_in="nextToken",  # noqa: S106
                                                  token_out="nextToken", maxResults=1000,  # noqa: S106
                                                  filter={"tagStatus": "TAGGED"}, **self._params(repository))
        except ApiError as e:
            raise SourceError(f"ECR DescribeImages failed: {e.code}", subject=f"{self.host}/{repository}",
                              retryable=e.retryable or e.code not in ("RepositoryNotFoundException",)) from e
        digests: dict[str, str] = {}
        for d in details:
            for t in d.get("imageTags") or ():
                digests[t] = d["imageDigest"]
        self._digests[repository] = (time.monotonic(), digests)
        return sorted(digests)

    async def get_digest(self, repository: str, reference: str) -> str | None:
        cached = self._digests.get(repository)
        if cached and time.monotonic() - cached[0] < self.cache_ttl and ":" not in reference:
            return cached[1].get(reference)
        image_id = {"imageDigest": reference} if ":" in reference else {"imageTag": reference}
        try:
            out = await self.session.call("ecr", "describe_images", imageIds=[image_id], **self._params(repository))
        except ApiError as e:
            if e.code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise SourceError(f"ECR DescribeImages failed: {e.code}", subject=f"{self.host}/{repository}",
                              retryable=e.retryable) from e
        details = out.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None
