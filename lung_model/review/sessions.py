"""Dashboard sign-in that survives a page reload: a signed session token in a cookie.

A local-account sign-in issues `user.issued_ms.expires_ms.signature` (HMAC-SHA256, site key
generated in `LUNG_HOME/secrets/`); the browser keeps it as a cookie and sends it when the
page is reloaded, and `user_for` turns it back into the reviewer. A token is refused once it
has expired, when its signature does not match, when the account is gone or its password was
reset after the token was issued, and after that user signed out (signing out ends the
user's sessions on every device). With an OIDC provider Streamlit's own cookie does this.
See https://docs.python.org/3/library/hmac.html
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from datetime import datetime

from lung_model.platform.keys import site_key
from lung_model.review import accounts
from lung_model.settings import Settings

COOKIE = "lung_session"
LIFETIME = 12 * 3600  # seconds: one shift
KEY_FILE = "dashboard-session.key"


def _signature(settings: Settings, payload: str) -> str:
    key = site_key(settings.secrets_dir / KEY_FILE)
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def issue(settings: Settings, user: str, now: float | None = None) -> str:
    """A token for `user`, who has just signed in with a password."""
    issued = math.ceil(1000 * (time.time() if now is None else now))  # not before a sign-out
    payload = f"{user}.{issued}.{issued + 1000 * LIFETIME}"
    return f"{payload}.{_signature(settings, payload)}"


def _since(account: dict[str, str], field: str) -> float:
    value = account.get(field)
    return datetime.fromisoformat(value).timestamp() if value else 0.0


def user_for(settings: Settings, token: object, now: float | None = None) -> str | None:
    """The reviewer a token was issued to, or None when it is not (or no longer) valid."""
    if not isinstance(token, str) or not token:
        return None
    payload, _, signature = token.rpartition(".")
    if not hmac.compare_digest(signature, _signature(settings, payload)):
        return None
    try:
        user, issued_text, expires_text = payload.rsplit(".", 2)  # names may hold dots
        issued, expires = int(issued_text), int(expires_text)
    except ValueError:
        return None
    account = accounts.load_accounts(settings).get(user)
    if account is None or 1000 * (time.time() if now is None else now) >= expires:
        return None
    if issued / 1000 < max(_since(account, "created_at"), _since(account, "signed_out_at")):
        return None  # password reset or signed out after this token was issued
    return user


def end(settings: Settings, user: str) -> None:
    """Sign `user` out everywhere: every token issued before now is refused."""
    accounts.mark_signed_out(settings, user)
