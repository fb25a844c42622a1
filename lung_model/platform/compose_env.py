"""Secrets for `docker compose`: generated once into `.env` (git-ignored), never committed.

docker-compose.yaml requires these variables (`${VAR:?...}`) and shares them between its
services; the JWT secret in particular must be the same for every Airflow component.
Existing values are kept, so running this again changes nothing.
See https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from lung_model.settings import PROJECT_ROOT

COMPOSE_ENV_FILE = PROJECT_ROOT / ".env"  # docker compose reads it beside the compose file
GENERATORS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(16),  # URL-safe: it goes into URLs
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
}


def read_env(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def write_compose_env(path: Path = COMPOSE_ENV_FILE) -> dict[str, str]:
    """Add the missing secrets to `path` (mode 0600); return every compose secret."""
    existing = read_env(path)
    added = {key: make() for key, make in GENERATORS.items() if key not in existing}
    if added:
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        prefix = "" if not path.read_text() or path.read_text().endswith("\n") else "\n"
        with path.open("a") as handle:
            handle.write(prefix + "".join(f"{k}={v}\n" for k, v in added.items()))
    return {key: {**existing, **added}[key] for key in GENERATORS}
