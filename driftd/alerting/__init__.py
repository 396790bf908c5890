"""Alertmanager: alerts built from reports, a durable outbox, delivery to every Alertmanager."""

from .alerts import Alert, AlertName, object_url
from .client import AlertmanagerClient, AlertmanagerError
from .notifier import AlertNotifier
from .outbox import Outbox

__all__ = ["Alert", "AlertName", "AlertNotifier", "AlertmanagerClient", "AlertmanagerError", "Outbox", "object_url"]
