"""The pieces under backup and restore: which pg_dump fits a server, no password on a
command line, MLflow's artifact paths moved to a new root and nothing else, keeping the
last N backups, one snapshot in the dump."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import text

from lung_model.lifecycle.backup import MANIFEST, backups, prune
from lung_model.platform import db, db_backup, mlflow_store, pg_tools


def test_the_oldest_tool_at_least_as_new_as_the_server() -> None:
    assert pg_tools.find_tool("pg_dump", 16).major == 16  # the embedded server's build
    assert pg_tools.find_tool("pg_restore", 17).major == 18
    with pytest.raises(FileNotFoundError, match="no pg_dump of PostgreSQL 99 or newer"):
        pg_tools.find_tool("pg_dump", 99)


def test_the_password_travels_in_the_environment() -> None:
    url, env = pg_tools.libpq_args("postgresql+psycopg2://ann:p%40ss@db:5433/results?sslmode=x")
    assert url == "postgresql://ann@db:5433/results?sslmode=x" and env == {"PGPASSWORD": "p@ss"}
    assert pg_tools.libpq_args("postgresql://postgres:@/postgres?host=/s") == (
        "postgresql://postgres@/postgres?host=/s",
        {},
    )


def test_relocate_moves_paths_under_the_old_root_only(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    values = [
        "/old/artifacts",
        "/old/artifacts/1/run/artifacts",
        "file:///old/artifacts/models/m-1",
        "/old/artifacts2/other",
        "models:/m-1",
    ]
    with closing(sqlite3.connect(store)) as connection, connection:
        connection.execute("CREATE TABLE runs (artifact_uri VARCHAR(200), n INTEGER)")
        connection.executemany("INSERT INTO runs VALUES (?, 1)", [(v,) for v in values])
    copy = tmp_path / "copy.db"
    mlflow_store.copy_store(store, copy)

    assert mlflow_store.relocate(copy, "/old/artifacts", "/new/home/artifacts") == 3

    with closing(sqlite3.connect(copy)) as connection:
        moved = [row[0] for row in connection.execute("SELECT artifact_uri FROM runs")]
    assert moved == [
        "/new/home/artifacts",
        "/new/home/artifacts/1/run/artifacts",
        "file:///new/home/artifacts/models/m-1",
        "/old/artifacts2/other",
        "models:/m-1",
    ]


def test_prune_keeps_the_newest_and_clears_dead_staging(tmp_path: Path) -> None:
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260102T000000Z-1"):
        (tmp_path / f"lung-backup-{stamp}").mkdir()
        (tmp_path / f"lung-backup-{stamp}" / MANIFEST).write_text("{}")
    (tmp_path / ".lung-backup-20260101T120000Z.partial").mkdir()  # died before the newest
    (tmp_path / ".lung-backup-20260103T000000Z.partial").mkdir()  # may still be running
    (tmp_path / "lung-backup-20260104T000000Z").mkdir()  # no manifest: not a backup

    pruned = prune(tmp_path, keep=2)

    assert sorted(p.name for p in pruned) == [
        ".lung-backup-20260101T120000Z.partial",
        "lung-backup-20260101T000000Z",
    ]
    assert [p.name for p in backups(tmp_path)] == [
        "lung-backup-20260102T000000Z",
        "lung-backup-20260102T000000Z-1",
    ]
    assert (tmp_path / ".lung-backup-20260103T000000Z.partial").exists()


def test_the_dump_holds_the_snapshot_not_what_was_written_during_it(
    pg_url: str, empty_pg_url: str, tmp_path: Path
) -> None:
    """A write that commits after the snapshot is exported, before pg_dump starts, is in
    neither the dump nor the manifest's counts: both describe the one snapshot."""
    engine = db.engine_for(pg_url)  # migrated
    insert = text(
        "INSERT INTO promotion_events (model_name, candidate_version, decision, reason, actor)"
        " VALUES ('lung-test-snapshot', '1', 'override', 'during the backup', 'test')"
    )
    with db_backup.snapshot(pg_url) as snap:
        with engine.begin() as connection:
            connection.execute(insert)
        dumped_by = db_backup.dump(pg_url, snap, tmp_path / "database.dump")
    db_backup.restore(empty_pg_url, tmp_path / "database.dump", dumped_by.major, replace=False)

    assert db.row_counts(db.engine_for(pg_url))["promotion_events"] == (
        snap.rows["promotion_events"] + 1
    )
    assert db.row_counts(db.engine_for(empty_pg_url)) == {
        table: snap.rows[table] for table in db.RESULT_TABLES
    }
