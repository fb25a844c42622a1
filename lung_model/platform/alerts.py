"""Alerts and notices for people: always logged, and POSTed as JSON to `LUNG_ALERT_WEBHOOK`
(a Slack/Teams-style incoming webhook) when that is set.
See https://docs.python.org/3/library/urllib.request.html
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from lung_model.settings import Settings

log = logging.getLogger(__name__)


def _post(message: str, details: dict[str, Any], settings: Settings) -> bool:
    """POST the message to LUNG_ALERT_WEBHOOK; True when it was accepted."""
    if not settings.alert_webhook:
        return False
    body = json.dumps({"text": message, "details": details}, default=str).encode()
    request = urllib.request.Request(  # noqa: S310 (the operator configures the URL)
        settings.alert_webhook, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return bool(200 <= response.status < 300)
    except OSError as error:  # the message is logged already; a dead webhook must not mask it
        log.error("alert webhook %s failed: %s", settings.alert_webhook, error)
        return False


def alert(message: str, details: dict[str, Any], settings: Settings) -> bool:
    """Log the alert; POST it to the webhook when configured. True when the POST worked."""
    log.error("ALERT %s %s", message, json.dumps(details, default=str))
    return _post(message, details, settings)


def notify(message: str, details: dict[str, Any], settings: Settings) -> bool:
    """Like `alert`, for good news (a retrain's outcome): logged at INFO."""
    log.info("%s %s", message, json.dumps(details, default=str))
    return _post(message, details, settings)
