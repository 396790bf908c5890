"""Alertmanager API v2: POST /api/v2/alerts. One session for every Alertmanager."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from ..errors import DriftdError


class AlertmanagerError(DriftdError):
    """Delivery failed. ``retryable`` is False when Alertmanager rejected the alerts as invalid (400)."""


def alerts_endpoint(url: str) -> str:
    u = url.rstrip("/")
    return u if u.endswith("/api/v2/alerts") else u + "/api/v2/alerts"


class AlertmanagerClient:
    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, alerts: Sequence[dict[str, Any]]) -> None:
        """Deliver ``alerts`` to one Alertmanager. Raises AlertmanagerError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        endpoint = alerts_endpoint(url)
        body = json.dumps(list(alerts), separators=(",", ":"))
        try:
            async with self._session.post(endpoint, data=body,
                                          headers={"Content-Type": "application/json"}) as resp:
                if resp.status == 200:
                    return
                text = (await resp.text())[:300]
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise AlertmanagerError(f"cannot reach Alertmanager: {e or type(e).__name__}", subject=endpoint,
                                    retryable=True) from e
        # 400/422: the payload is invalid and will stay so; 5xx and the rest: try again later.
        raise AlertmanagerError(f"Alertmanager answered {resp.status}: {text.strip()}", subject=endpoint,
                                retryable=resp.status not in (400, 422))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
