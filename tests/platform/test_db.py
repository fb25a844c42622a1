"""Migrations against the real PostgreSQL and the embedded one: idempotent and race-safe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from lung_model.platform import db
from lung_model.settings import Settings

TABLES = {"scan_batches", "images", "predictions", "study_results", "reviews", "promotion_events"}


def tables(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(db.sqlalchemy_url(url))
    with engine.connect() as connection:
        names = set(sqlalchemy.inspect(connection).get_table_names())
    engine.dispose()
    return names


def test_migrations_apply_once_then_nothing(empty_pg_url: str) -> None:
    first = db.migrate(empty_pg_url)
    assert first and first[0].startswith("0001")
    assert db.migrate(empty_pg_url) == []
    assert tables(empty_pg_url) >= TABLES


def test_two_processes_migrating_at_once_apply_each_migration_once(empty_pg_url: str) -> None:
    code = "import json, sys; from lung_model.platform.db import migrate; print(json.dumps(migrate(sys.argv[1])))"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_pg_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [json.loads(process.communicate(timeout=120)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    applied = sorted(results, key=len)
    assert applied[0] == []
    assert applied[1] and applied[1][0].startswith("0001")
    assert tables(empty_pg_url) >= TABLES


def test_embedded_postgres_starts_migrates_and_is_reused(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home")
    try:
        url = db.database_url(settings)
        assert "host=" in url and str(settings.pgdata) in url  # a Unix socket, no TCP port
        assert db.migrate(url)
        assert db.database_url(settings) == url  # reused, not started again
        assert tables(url) >= TABLES
        assert db.migrate(url) == []
    finally:
        assert db.stop_embedded(settings)


def test_make_stop_stops_the_embedded_server_once_and_quietly() -> None:
    """`python -m lung_model stop` in its own process, as `make stop` runs it: the server
    stops, and no second `pg_ctl stop` (from the server handle's exit hook) logs an error."""
    # Not tmp_path: another pytest session starting meanwhile may prune this one's old
    # temporary folders, and the server's data folder with them.
    with tempfile.TemporaryDirectory(prefix="lung-stop-") as folder:
        _stop_quietly(Settings(_env_file=None, home=Path(folder) / "home"))


def _stop_quietly(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LUNG_HOME"] = str(settings.home)
    runs = [
        subprocess.run(
            [sys.executable, "-m", "lung_model", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for command in ("migrate", "stop")  # `make db`, later `make stop`: no process in common
    ]
    assert [run.returncode for run in runs] == [0, 0], [run.stderr[-2000:] for run in runs]
    done = runs[1]
    assert "embedded PostgreSQL stopped" in done.stdout
    output = done.stdout + done.stderr
    assert "Failed postgres command" not in output and "does not exist" not in output, output
    assert not (settings.pgdata / "postmaster.pid").exists()


def test_reviews_are_append_only(pg_url: str) -> None:
    engine = db.engine_for(pg_url)
    with engine.begin() as connection:
        batch = connection.execute(
            text("INSERT INTO scan_batches (study, source_path) VALUES ('s1', '/x') RETURNING id")
        ).scalar_one()
        connection.execute(
            text("INSERT INTO reviews (batch_id, reviewer, decision) VALUES (:b, 'dr', 'confirm')"),
            {"b": batch},
        )
    for statement in ("UPDATE reviews SET comment = 'x'", "DELETE FROM reviews"):
        with (
            pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"),
            engine.begin() as connection,
        ):
            connection.execute(text(statement))


def test_a_prediction_is_unique_per_image_and_model_version(pg_url: str) -> None:
    insert = text(
        "INSERT INTO predictions (image_sha256, model_name, model_version, data_version,"
        " p_normal, p_benign, p_malignant, predicted_class)"
        " VALUES (:sha, 'm', :version, 'd', 0.1, 0.2, 0.7, 'malignant')"
        " ON CONFLICT (image_sha256, model_name, model_version) DO NOTHING"
    )
    engine = db.engine_for(pg_url)
    with engine.begin() as connection:
        added = [
            connection.execute(insert, {"sha": "a" * 64, "version": v}).rowcount
            for v in ("1", "1", "2")
        ]
    assert added == [1, 0, 1]


# Numbers two migrations already share. yoyo knows an applied migration by its file name, so
# renaming one would apply it again on a database that has it; these stay as they are.
SHARED_NUMBERS_GRANDFATHERED = {
    "0003": {"0003.dashboard-role.sql", "0003.dashboard-worklist.sql"},
}


def test_every_migration_has_a_number_of_its_own() -> None:
    """yoyo applies `sql/` in file-name order; two files with one number leave their order
    to the rest of the name, so every new migration takes the next free number."""
    files = sorted(p.name for p in db.MIGRATIONS_DIR.glob("*.sql"))
    assert files, f"no migrations found in {db.MIGRATIONS_DIR}"
    misnamed = [
        name for name in files if not re.fullmatch(r"\d{4}\.[a-z0-9-]+(\.rollback)?\.sql", name)
    ]
    assert not misnamed, f"migration files not named NNNN.name.sql: {misnamed}"

    by_number: dict[str, set[str]] = {}
    for name in files:
        if not name.endswith(".rollback.sql"):  # a rollback shares its migration's number
            by_number.setdefault(name[:4], set()).add(name)
    shared = {number: names for number, names in by_number.items() if len(names) > 1}

    assert shared == SHARED_NUMBERS_GRANDFATHERED, (
        f"migrations sharing a number: {shared}; only {SHARED_NUMBERS_GRANDFATHERED} may "
        f"(applied before the rule); give the new file the next free number, "
        f"{max(map(int, by_number)) + 1:04d}"
    )
