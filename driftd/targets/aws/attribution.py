"""Who last changed a resource, from CloudTrail LookupEvents, where the account permits it.

Best effort by design: the first refusal (no permission, not implemented, a
region without the trail) switches attribution off for the account, silently
for the report and once in the log; drift is never held back by it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...errors import DriftdError
from ...log import get_logger
from .session import AccountSession

log = get_logger(__name__)

_READ_PREFIXES = ("Get", "Describe", "List", "Head", "Lookup")


class Attributor:
    def __init__(self, session: AccountSession, *, enabled: bool = True) -> None:
        self.session = session
        self.enabled = enabled

    async def last_change(self, resource_name: str, region: str) -> tuple[str | None, datetime | None]:
        if not self.enabled or not resource_name:
            return None, None
        try:
            r = await self.session.call("cloudtrail", "lookup_events", region=region, MaxResults=10,
                                        LookupAttributes=[{"AttributeKey": "ResourceName",
                                                           "AttributeValue": resource_name}])
        except DriftdError as e:
            self.enabled = False
            log.info("aws.attribution.disabled", account=self.session.name, reason=str(e))
            return None, None
        for ev in r.get("Events") or []:
            if _is_write(ev):
                when = ev.get("EventTime")
                return ev.get("Username"), when if isinstance(when, datetime) else None
        return None, None


def _is_write(ev: dict[str, Any]) -> bool:
    if str(ev.get("ReadOnly", "")).lower() == "true":
        return False
    return not str(ev.get("EventName", "")).startswith(_READ_PREFIXES)
