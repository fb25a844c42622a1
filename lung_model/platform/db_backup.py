"""The results database in a backup: one snapshot dumped with pg_dump, restored with
pg_restore into an empty database.

`snapshot` opens a read-only REPEATABLE READ transaction and exports its snapshot; pg_dump
dumps exactly that snapshot (`--snapshot`), and the facts the manifest records (rows per
table, applied migrations, the champion by promotion history, roles the tables grant to) are
read in the same transaction, so they describe the dump and nothing written since. Roles are
cluster-wide and not in a database dump: a restore creates the ones the grants name (the
dashboard's `lung_dashboard`) when the target server lacks them, without a password (the
dashboard sets it from `LUNG_HOME/secrets/` when it connects).
See https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from lung_model.platform import db, pg_tools

_TABLES = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1
"""
# Roles the public tables and sequences grant to, other than their owner and built-ins.
_GRANTEES = """
SELECT DISTINCT r.rolname, r.rolcanlogin, r.rolinherit
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
WHERE c.relnamespace = 'public'::regnamespace AND a.grantee <> c.relowner
  AND NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%' ORDER BY 1
"""
# The champion the promotion history names (the registry holds the alias itself).
_CHAMPIONS = """
SELECT DISTINCT ON (model_name) model_name, candidate_version FROM promotion_events
WHERE decision IN ('promoted', 'override', 'rollback')
ORDER BY model_name, created_at DESC, id DESC
"""


@dataclass
class Snapshot:
    """What the dumped snapshot holds, read inside it."""

    server_version: str
    server_major: int
    snapshot_id: str
    rows: dict[str, int] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)
    champions: dict[str, str] = field(default_factory=dict)
    roles: list[dict[str, Any]] = field(default_factory=list)


def _connect(url: str) -> Any:
    return psycopg2.connect(db.yoyo_url(url))


def _read_facts(cursor: Any, snap: Snapshot) -> None:
    cursor.execute(_TABLES)
    tables = [name for (name,) in cursor.fetchall()]
    for table in tables:
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        snap.rows[table] = int(cursor.fetchone()[0])
    if "_yoyo_migration" in tables:
        cursor.execute(
            "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id"
        )
        snap.migrations = [name for (name,) in cursor.fetchall()]
    if "promotion_events" in tables:
        cursor.execute(_CHAMPIONS)
        snap.champions = {name: version for name, version in cursor.fetchall()}
    cursor.execute(_GRANTEES)
    snap.roles = [
        {"name": name, "login": login, "inherit": inherit}
        for name, login, inherit in cursor.fetchall()
    ]


@contextmanager
def snapshot(url: str) -> Iterator[Snapshot]:
    """Hold one exported snapshot of the database while the block runs."""
    with closing(_connect(url)) as connection:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_export_snapshot(), current_setting('server_version'),"
                " current_setting('server_version_num')::int"
            )
            snapshot_id, version, number = cursor.fetchone()
            snap = Snapshot(version, pg_tools.server_major(number), snapshot_id)
            _read_facts(cursor, snap)
            yield snap
        connection.rollback()


def dump(url: str, snap: Snapshot, target: Path) -> pg_tools.Tool:
    """pg_dump the snapshot (custom format) into `target`; the pg_dump used."""
    tool = pg_tools.find_tool("pg_dump", snap.server_major)
    pg_tools.run(
        tool, url, ["--format=custom", f"--snapshot={snap.snapshot_id}", f"--file={target}"]
    )
    return tool


def results_tables(url: str) -> list[str]:
    """The results tables the database already holds (without migrating it)."""
    with closing(_connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT t FROM unnest(%s::text[]) t WHERE to_regclass('public.' || t) IS NOT NULL",
            (list(db.RESULT_TABLES),),
        )
        return [name for (name,) in cursor.fetchall()]


def ensure_roles(url: str, roles: list[dict[str, Any]]) -> list[str]:
    """Create the roles the dump grants to that the server lacks; the names created."""
    created = []
    with closing(_connect(url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for role in roles:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role["name"],))
                if cursor.fetchone():
                    continue
                cursor.execute(
                    sql.SQL("CREATE ROLE {} {} NOSUPERUSER NOCREATEDB NOCREATEROLE {}").format(
                        sql.Identifier(role["name"]),
                        sql.SQL("LOGIN" if role["login"] else "NOLOGIN"),
                        sql.SQL("INHERIT" if role["inherit"] else "NOINHERIT"),
                    )
                )
                created.append(role["name"])
    return created


def server_major(url: str) -> int:
    with closing(_connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        return pg_tools.server_major(cursor.fetchone()[0])


def restore(url: str, source: Path, dumped_by_major: int, replace: bool) -> pg_tools.Tool:
    """pg_restore the dump in one transaction (all or nothing), objects owned by the URL's
    user; with `replace`, the dump's objects are dropped first."""
    tool = pg_tools.find_tool("pg_restore", max(server_major(url), dumped_by_major))
    options = ["--single-transaction", "--no-owner"]
    if replace:
        options += ["--clean", "--if-exists"]
    pg_tools.run(tool, url, [*options, str(source)])
    return tool
