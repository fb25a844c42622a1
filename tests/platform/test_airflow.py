"""Airflow's configuration: generated secrets, the metadata database, Connections."""

from __future__ import annotations

import json
import uuid

import psycopg2
import pytest
from pg_admin import SERVER_URL, admin

from lung_model.platform import airflow
from lung_model.settings import Settings


def test_secrets_are_generated_once_and_private(settings: Settings) -> None:
    first = airflow.airflow_secrets(settings)
    assert airflow.airflow_secrets(settings) == first
    assert len(set(first.values())) == len(first)  # all different
    for name in ("airflow.json", "airflow-passwords.json"):
        assert (settings.secrets_dir / name).stat().st_mode & 0o077 == 0
    passwords = json.loads((settings.secrets_dir / "airflow-passwords.json").read_text())
    assert passwords == {"admin": first["admin_password"]}


def test_environment_shares_one_configuration(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://x@db/airflow_meta")
    env = airflow.environment(settings, executor="CeleryExecutor")
    keys = airflow.airflow_secrets(settings)
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == keys["jwt_secret"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql://x@db/airflow_meta"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://x@db/airflow_meta"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    inbox = json.loads(env["AIRFLOW_CONN_LUNG_INBOX"])
    assert inbox["extra"] == {"path": str(settings.inbox), "ready_marker": "_READY"}
    results = json.loads(env["AIRFLOW_CONN_LUNG_RESULTS"])
    url = airflow.url_from_connection(
        results["host"],
        results["login"],
        results["password"],
        results["schema"],
        results["port"],
        results["extra"],
    )
    assert psycopg2.connect(url).close() is None  # the Connection reaches the results DB


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@/postgres?host=%2Fsome%2Fsocket",
        "postgresql://u:p%40ss@db.example:5433/lung?sslmode=require",
    ],
)
def test_connection_round_trip(url: str) -> None:
    fields = json.loads(airflow.connection_json(url))
    assert fields["password"] in (None, "p@ss")
    back = airflow.url_from_connection(
        fields["host"],
        fields["login"],
        fields["password"],
        fields["schema"],
        fields["port"],
        fields["extra"],
    )
    assert back == url


def databases_named(name: str) -> int:
    connection = psycopg2.connect(SERVER_URL)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def test_ensure_database_creates_it_once() -> None:
    name = f"lung_af_{uuid.uuid4().hex[:8]}"
    url = airflow.with_database(SERVER_URL, name)
    assert databases_named(name) == 0
    try:
        airflow.ensure_database(url)
        assert databases_named(name) == 1
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE kept (x int)")
        connection.close()

        airflow.ensure_database(url)  # exists: nothing to do

        assert databases_named(name) == 1
        with psycopg2.connect(url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('kept') IS NOT NULL")
            assert cursor.fetchone() == (True,), "the existing database was replaced"
        connection.close()
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
