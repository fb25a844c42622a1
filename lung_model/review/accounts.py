"""Local dashboard accounts: bcrypt-hashed passwords in a file under `LUNG_HOME/secrets/`.

Used when no OIDC provider is configured (`LUNG_DASHBOARD_AUTH_PROVIDER`). Setup creates the
first account with a generated password (`ensure_first_account`, which `make demo` prints);
`python -m lung_model users add NAME` creates more (or resets a password). Nothing here is ever committed: the
secrets folder lives in the git-ignored `var/`.
See https://github.com/pyca/bcrypt
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import bcrypt

from lung_model.settings import Settings

ACCOUNTS_FILE = "dashboard-accounts.json"
FIRST_LOGIN_FILE = "dashboard-first-login.txt"
FIRST_USER = "reviewer"
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
ROUNDS = 12  # bcrypt cost: 2**12 rounds, about 0.25 s per check on this machine


MAX_FAILURES = 5  # per username and process, within FAILURE_WINDOW seconds
FAILURE_WINDOW = 300.0
_failures: dict[str, list[float]] = {}
_failures_lock = threading.Lock()


class FirstLogin(NamedTuple):
    username: str
    password: str | None  # None once the first-login note has been removed


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    temporary.replace(path)


@lru_cache
def _dummy_hash(rounds: int) -> bytes:
    """Checked against when the user does not exist, so both paths take bcrypt's time."""
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=rounds))


def normalise_username(username: str) -> str:
    """How a typed username is matched: surrounding spaces dropped, case folded."""
    return username.strip().lower()


def load_accounts(settings: Settings) -> dict[str, dict[str, str]]:
    path = settings.secrets_dir / ACCOUNTS_FILE
    if not path.exists():
        return {}
    accounts: dict[str, dict[str, str]] = json.loads(path.read_text())
    return accounts


def add_account(settings: Settings, username: str, password: str | None = None) -> str:
    """Create or reset an account; return its password (generated when not given)."""
    if not USERNAME.match(username):
        raise ValueError("username: 2-32 of a-z 0-9 . _ - starting with a letter")
    password = password or secrets.token_urlsafe(12)
    if not 10 <= len(password.encode()) <= 72:
        raise ValueError("password: 10 to 72 bytes")
    accounts = load_accounts(settings)
    accounts[username] = {
        "hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=ROUNDS)).decode(),
        "created_at": datetime.now(UTC).isoformat(),  # sessions issued before are refused
    }
    _write_private(settings.secrets_dir / ACCOUNTS_FILE, json.dumps(accounts, indent=2))
    return password


def mark_signed_out(settings: Settings, username: str) -> None:
    """Record that `username` signed out now (`lung_model.review.sessions` then refuses
    every session token issued before)."""
    accounts = load_accounts(settings)
    if username in accounts:
        accounts[username]["signed_out_at"] = datetime.now(UTC).isoformat()
        _write_private(settings.secrets_dir / ACCOUNTS_FILE, json.dumps(accounts, indent=2))


def locked_out(username: str, now: float | None = None) -> bool:
    """Too many recent failed sign-ins for this username (guessing is throttled)."""
    now = time.monotonic() if now is None else now
    with _failures_lock:
        recent = [
            t for t in _failures.get(normalise_username(username), []) if now - t < FAILURE_WINDOW
        ]
        _failures[normalise_username(username)] = recent
        return len(recent) >= MAX_FAILURES


def sign_in(settings: Settings, username: str, password: str) -> bool:
    """`verify`, throttled: after MAX_FAILURES failures in FAILURE_WINDOW, refuse outright."""
    if locked_out(username):
        return False
    if verify(settings, username, password):
        return True
    with _failures_lock:
        _failures.setdefault(normalise_username(username), []).append(time.monotonic())
    return False


def verify(settings: Settings, username: str, password: str) -> bool:
    """True when the password matches; takes the same time whether or not the user exists."""
    account = load_accounts(settings).get(normalise_username(username))
    hashed = account["hash"].encode() if account else _dummy_hash(ROUNDS)
    secret = password.encode()[:72]  # bcrypt reads at most 72 bytes; newer versions refuse more
    matches = bcrypt.checkpw(secret, hashed) and len(password.encode()) <= 72
    return bool(account) and matches


def ensure_first_account(settings: Settings) -> FirstLogin:
    """Create the first account at setup if there is none; return its login for `make demo`."""
    note = settings.secrets_dir / FIRST_LOGIN_FILE
    if not load_accounts(settings):
        password = add_account(settings, FIRST_USER)
        _write_private(note, f"{FIRST_USER}\n{password}\n")
        return FirstLogin(FIRST_USER, password)
    if note.exists():
        username, password = note.read_text().split("\n")[:2]
        return FirstLogin(username, password)
    return FirstLogin(FIRST_USER, None)
