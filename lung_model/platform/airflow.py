"""Airflow on this machine: its home, metadata database, generated secrets and configuration.

Every Airflow process we start (`make demo`, the tests, the CLI) gets its whole configuration
as `AIRFLOW__<SECTION>__<KEY>` environment variables built here from `Settings`, so there is
no airflow.cfg to keep in sync. Airflow's metadata lives in PostgreSQL: a database `airflow`
next to the results database (in the embedded server when `DATABASE_URL` is unset). Secrets
(JWT secret, API secret key, Fernet key, admin password) are generated once into
`LUNG_HOME/secrets/` (git-ignored, mode 0600) and never committed.
The results database and the inbox reach tasks as Airflow Connections (`lung_results`,
`lung_inbox`) defined through `AIRFLOW_CONN_*` variables.
See https://airflow.apache.org/docs/apache-airflow/stable/configurations-ref.html and
https://airflow.apache.org/docs/apache-airflow/stable/howto/connection.html
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

from lung_model.platform import db
from lung_model.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
METADATA_DATABASE = "airflow"
RESULTS_CONN_ID = "lung_results"  # PostgreSQL holding the results (AIRFLOW_CONN_LUNG_RESULTS)
INBOX_CONN_ID = "lung_inbox"  # fs connection: {"path": <inbox>, "ready_marker": "_READY"}
TENSORFLOW_QUEUE = "tensorflow"  # Celery queue of the tasks that load TensorFlow
DVC_POOL = "dvc"  # one slot: DVC must not run twice at once on one checkout


def airflow_home(settings: Settings) -> Path:
    return settings.home / "airflow"


def airflow_secrets(settings: Settings) -> dict[str, str]:
    """Read the generated secrets, creating them (0600, folder 0700) on first use."""
    folder = settings.secrets_dir
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / "airflow.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        "api_secret_key": lambda: secrets.token_urlsafe(32),
        "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "admin_password": lambda: secrets.token_urlsafe(12),
    }
    missing = {key: make() for key, make in wanted.items() if key not in stored}
    if missing:
        stored.update(missing)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2) + "\n")
    passwords = folder / "airflow-passwords.json"  # the simple auth manager's user file
    passwords.touch(mode=0o600, exist_ok=True)
    passwords.write_text(json.dumps({ADMIN_USER: stored["admin_password"]}) + "\n")
    return stored


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database (query, e.g. a socket host, kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def ensure_database(url: str) -> None:
    """Create the database `url` names on its server when it does not exist yet."""
    import psycopg2

    name = urlsplit(url).path.lstrip("/")
    connection = psycopg2.connect(db.yoyo_url(with_database(url, "postgres")))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
                log.info("created database %s for Airflow's metadata", name)
    finally:
        connection.close()


def metadata_url(settings: Settings) -> str:
    """Airflow's metadata database: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when set, else a
    database `airflow` on the results server (created when missing)."""
    if configured := os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        return configured
    url = with_database(db.sqlalchemy_url(db.database_url(settings)), METADATA_DATABASE)
    ensure_database(url)
    return url


def connection_json(url: str) -> str:
    """An Airflow Connection (JSON form) for a PostgreSQL URL, Unix-socket hosts included."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = query.pop("host", None) or parts.hostname or ""
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host,
            "port": parts.port,
            "login": unquote(parts.username or "") or None,
            "password": unquote(parts.password or "") or None,
            "schema": parts.path.lstrip("/"),
            "extra": query,
        }
    )


def url_from_connection(
    host: str | None,
    login: str | None,
    password: str | None,
    schema: str | None,
    port: int | None,
    extra: dict[str, str] | None = None,
) -> str:
    """The PostgreSQL URL of an Airflow Connection's fields (inverse of `connection_json`)."""
    query = dict(extra or {})
    netloc_host = ""
    if host and host.startswith("/"):
        query["host"] = host
    elif host:
        netloc_host = host + (f":{port}" if port else "")
    auth = quote(login or "", safe="") + (f":{quote(password, safe='')}" if password else "")
    netloc = f"{auth}@{netloc_host}" if auth else netloc_host
    return urlunsplit(("postgresql", netloc, f"/{schema or ''}", urlencode(query), ""))


def environment(
    settings: Settings,
    executor: str = "LocalExecutor",
    metadata: str | None = None,
    broker_url: str | None = None,
) -> dict[str, str]:
    """The environment every Airflow process of this deployment runs with."""
    keys = airflow_secrets(settings)
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    metadata = metadata or metadata_url(settings)
    api = urlsplit(settings.airflow_url)
    env = {
        "AIRFLOW_HOME": str(home),
        "LUNG_HOME": str(settings.home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            settings.secrets_dir / "airflow-passwords.json"
        ),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url.rstrip('/')}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__API__HOST": settings.bind_host,
        "AIRFLOW__API__PORT": str(api.port or 8080),
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": settings.bind_host,  # not 0.0.0.0
        f"AIRFLOW_CONN_{RESULTS_CONN_ID.upper()}": connection_json(db.database_url(settings)),
        f"AIRFLOW_CONN_{INBOX_CONN_ID.upper()}": json.dumps(
            {
                "conn_type": "fs",
                "extra": {"path": str(settings.inbox), "ready_marker": settings.ready_marker},
            }
        ),
    }
    if settings.mlflow_tracking_uri is None:
        env["MLFLOW_TRACKING_URI"] = settings.tracking_uri()
    if settings.results_dicom_destination:  # lung_results_out's, also when set in code (demo)
        env["LUNG_RESULTS_DICOM_DESTINATION"] = settings.results_dicom_destination
    if executor == "CeleryExecutor":
        env["AIRFLOW__CELERY__BROKER_URL"] = broker_url or "redis://127.0.0.1:6379/0"
        env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + db.yoyo_url(metadata)
    return env


def airflow(
    *args: str, env: dict[str, str], check: bool = True, timeout: float | None = None
) -> str:
    """Run one `airflow` CLI command of this venv with `env`; return its output."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def migrate_metadata(env: dict[str, str]) -> None:
    """Create or upgrade Airflow's own tables and the `dvc` pool (both idempotent)."""
    airflow("db", "migrate", env=env)
    airflow("pools", "set", DVC_POOL, "1", "DVC runs one at a time per checkout", env=env)
