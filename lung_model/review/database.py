"""The dashboard's own database connection, as the restricted `lung_dashboard` role.

Migration `sql/0003.dashboard-role.sql` creates the role (SELECT on results, INSERT on
reviews). At setup the owner connection gives it a generated password, kept in
`LUNG_HOME/secrets/`; the dashboard then logs in as that role, never as the owner.
`LUNG_DASHBOARD_DATABASE_URL` overrides all of this for deployments that manage the login.
See https://www.postgresql.org/docs/current/sql-grant.html
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from psycopg2 import sql
from psycopg2.extensions import encrypt_password
from sqlalchemy import Engine, create_engine

from lung_model.platform import db
from lung_model.settings import Settings

ROLE = "lung_dashboard"
# Short interactive queries: JIT compilation costs more than it saves (up to a second).
CONNECT_ARGS = {"options": "-c jit=off -c statement_timeout=30000"}
PASSWORD_FILE = "dashboard-db-password"


@lru_cache
def _password(owner_url: str, path: Path) -> str:
    """The role's password: generated once into the secrets folder, and set on the server
    once per process (so a new or restored server accepts it too)."""
    if path.exists():
        password = path.read_text().strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        password = secrets.token_urlsafe(24)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
    raw = db.engine_for(owner_url).raw_connection()  # migrated: the role exists
    try:
        connection = raw.driver_connection
        # Hashed here (SCRAM or MD5, as the server wants): no clear text in server logs.
        verifier = encrypt_password(password, ROLE, connection)
        cursor = raw.cursor()
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(ROLE), sql.Literal(verifier)
        )
        cursor.execute(statement.as_string(connection))
        cursor.close()
        raw.commit()
    finally:
        raw.close()
    return password


def with_user(url: str, user: str, password: str) -> str:
    """The same server and database, logged in as another user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def dashboard_url(settings: Settings) -> str:
    """Where the dashboard connects: migrated first (as the owner), then as the role."""
    if settings.dashboard_database_url:
        return settings.dashboard_database_url
    owner_url = db.database_url(settings)
    return with_user(owner_url, ROLE, _password(owner_url, settings.secrets_dir / PASSWORD_FILE))


@lru_cache
def _engine(url: str) -> Engine:
    return create_engine(
        db.sqlalchemy_url(url), pool_pre_ping=True, pool_size=4, connect_args=CONNECT_ARGS
    )


def dashboard_engine(settings: Settings) -> Engine:
    """A pooled engine logged in as the dashboard role (one per URL and process)."""
    return _engine(dashboard_url(settings))
