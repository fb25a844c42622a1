"""A site as release 6514801 left it (tests/fixtures/release-6514801, made by its make.py):
its results database restored onto the test server, its MLflow store under a LUNG_HOME;
and a schema snapshot to compare databases by."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from lung_model.platform import pg_tools
from lung_model.platform.db import yoyo_url
from lung_model.platform.db_backup import ensure_roles
from lung_model.platform.mlflow_store import relocate
from lung_model.settings import PROJECT_ROOT

RELEASE = PROJECT_ROOT / "tests" / "fixtures" / "release-6514801"
FIXTURE_DATA = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"  # what it trained and scored
ORIGIN: dict[str, Any] = json.loads((RELEASE / "origin.json").read_text())
DUMP = RELEASE / "results.sql"

# Roles are cluster-wide and not in a pg_dump; the dump grants to this one, which exists on
# the server the release ran on (its migration 0003 made it): so it must exist here too.
DASHBOARD_ROLE = {"name": "lung_dashboard", "login": True, "inherit": False}


def restore_database(url: str) -> None:
    """Load the release's plain-SQL `pg_dump` into the (empty) database at `url` with psql,
    in one transaction."""
    ensure_roles(url, [DASHBOARD_ROLE])
    psql = pg_tools.find_tool("psql", 16)  # as new as the pg_dump that wrote it (\restrict)
    pg_tools.run(psql, url, ["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(DUMP)])


def install_store(home: Path) -> Path:
    """Copy the release's MLflow store to `home/mlflow`, where Settings looks for it, with its
    absolute artifact locations moved there from the LUNG_HOME the fixture was made in."""
    store = home / "mlflow"
    shutil.copytree(RELEASE / "mlflow", store)
    relocate(store / "mlflow.db", f"{ORIGIN['home']}/mlflow", str(store))
    return store


# What makes two databases the same schema: every table's columns and types, constraints,
# indexes, triggers, functions, and who may do what (table, sequence, function and default
# privileges). Values and sequence positions are data, not schema.
_SCHEMA = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
          AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
        WHERE NOT tgisinternal""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid), prosecdef FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace""",
    "privileges": """
        SELECT c.relname, c.relkind::text, a.grantee::regrole::text, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.relnamespace = 'public'::regnamespace
        UNION ALL
        SELECT p.proname, 'function', a.grantee::regrole::text, a.privilege_type
        FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        WHERE p.pronamespace = 'public'::regnamespace
        UNION ALL
        SELECT d.defaclobjtype::text, 'default', a.grantee::regrole::text, a.privilege_type
        FROM pg_default_acl d, aclexplode(d.defaclacl) a""",
}


@dataclass(frozen=True)
class Migrated:
    """An empty database migrated in one go: the end state every upgrade path must reach."""

    order: list[str]  # migration ids in the order one `migrate` applies them
    schema: dict[str, list[tuple[Any, ...]]]


def schema(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The schema of the database at `url`, each part sorted."""
    connection = psycopg2.connect(yoyo_url(url))
    try:
        with connection.cursor() as cursor:
            snapshot = {}
            for part, query in _SCHEMA.items():
                cursor.execute(query)
                snapshot[part] = sorted(cursor.fetchall(), key=repr)
    finally:
        connection.close()
    return snapshot
