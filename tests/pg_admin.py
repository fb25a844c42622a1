"""Administration of the test PostgreSQL server, shared by every conftest and test."""

from __future__ import annotations

import os

import psycopg2

SERVER_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin(sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    connection = psycopg2.connect(SERVER_URL)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close()
