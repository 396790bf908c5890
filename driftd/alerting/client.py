"""Alertmanager API v2: POST /api/v2/alerts. One session for every Alertmanager."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import DriftdError


class AlertmanagerError(DriftdError):
    """Delivery failed. ``retryable`` is False when Alertmanager rejected the alerts as invalid (400)."""


def alerts_endpoint(url: str) -> str:
    u = url.rstrip("/")
    return u if u.endswith("/api/v2/alerts") else u + "/api/v2/alerts"


@dataclass(frozen=True)
class AlertmanagerAuth:
    """``[alertmanager]`` username + password_file (basic) or bearer_token_file; the files are read on every
    delivery, so a rotated secret is used without a reload. Never in a URL: URLs end up in logs."""

    username: str | None = None
    password_file: Path | None = None
    bearer_token_file: Path | None = None

    def headers(self) -> dict[str, str]:
        try:
            if self.bearer_token_file is not None:
                return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}
            if self.username is not None and self.password_file is not None:
                pair = f"{self.username}:{self.password_file.read_text().strip()}".encode()
                return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        except OSError as e:
            raise AlertmanagerError(f"cannot read the Alertmanager credentials: {e.strerror or type(e).__name__}",
                                    subject=str(self.bearer_token_file or self.password_file), retryable=True) from e
        return {}


class AlertmanagerClient:
    def __init__(self, timeout: float = 10.0, auth: AlertmanagerAuth | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._auth = auth or AlertmanagerAuth()

    async def post(self, url: str, alerts: Sequence[dict[str, Any]]) -> None:
        """Deliver ``alerts`` to one Alertmanager. Raises AlertmanagerError."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        endpoint = alerts_endpoint(url)
        body = json.dumps(list(alerts), separators=(",", ":"))
        try:
            async with self._session.post(endpoint, data=body,
                                          headers={"Content-Type": "application/json", **self._auth.headers()}) as resp:
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
