"""Every migration applies on a database at any earlier migration, and every path ends at
the schema of an empty database migrated in one go (tables, columns, types, constraints,
indexes, triggers, functions, grants); migrating again changes nothing."""

from __future__ import annotations

import pytest
import sqlalchemy
from release_fixture import Migrated, schema
from sqlalchemy import text
from yoyo import get_backend, read_migrations
from yoyo.migrations import MigrationList

from lung_model.platform import db

MIGRATIONS = sorted(
    p for p in db.MIGRATIONS_DIR.glob("*.sql") if not p.name.endswith(".rollback.sql")
)


def apply_next(url: str) -> str:
    """Apply only the first pending migration, as `migrate` would order them; its id."""
    backend = get_backend(db.yoyo_url(url))
    with backend.lock():
        pending = backend.to_apply(read_migrations(str(db.MIGRATIONS_DIR)))
        backend.apply_migrations(MigrationList(pending.items[:1]))
    backend.connection.close()
    return pending.items[0].id


def test_step_by_step_from_the_first_each_migration_applies(
    empty_pg_url: str, migrated_in_one_go: Migrated
) -> None:
    order = migrated_in_one_go.order
    assert len(order) == len(MIGRATIONS)
    applied = [apply_next(empty_pg_url) for _ in order]
    assert applied == order
    assert schema(empty_pg_url) == migrated_in_one_go.schema
    assert db.migrate(empty_pg_url) == []
    assert schema(empty_pg_url) == migrated_in_one_go.schema


@pytest.mark.parametrize("done", range(len(MIGRATIONS)), ids=lambda n: f"after-{n}")
def test_a_database_at_an_earlier_migration_with_rows_upgrades_in_one_call(
    done: int, empty_pg_url: str, migrated_in_one_go: Migrated
) -> None:
    """`done` migrations applied, a scored and reviewed study stored as that schema allows;
    then `migrate` (what every entry point calls) applies exactly the rest."""
    order = migrated_in_one_go.order
    for _ in range(done):
        apply_next(empty_pg_url)
    batch = seed_reviewed_study(empty_pg_url) if done else None

    assert db.migrate(empty_pg_url) == order[done:]
    assert schema(empty_pg_url) == migrated_in_one_go.schema
    assert db.migrate(empty_pg_url) == []
    if batch is not None:  # on the worklist, backfilled or kept by its triggers
        assert worklist_entry(empty_pg_url, batch) == ("old-study", "malignant", "benign", True)


def seed_reviewed_study(url: str) -> int:
    """A scored study with a study-level correction, in the columns of the first migration."""
    engine = sqlalchemy.create_engine(db.sqlalchemy_url(url))
    with engine.begin() as connection:
        batch = connection.execute(
            text(
                "INSERT INTO scan_batches (study, source_path, status, n_files, n_scored)"
                " VALUES ('old-study', '/inbox/old-study', 'done', 1, 1) RETURNING id"
            )
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO study_results (batch_id, model_name, model_version, data_version,"
                " n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices,"
                " predicted_class, needs_review) VALUES (:b, 'm', '1', 'd', 1, 0.9, 0.9, 1,"
                " 'malignant', false)"
            ),
            {"b": batch},
        )
        connection.execute(
            text(
                "INSERT INTO reviews (batch_id, reviewer, decision, corrected_label)"
                " VALUES (:b, 'dr', 'correct', 'benign')"
            ),
            {"b": batch},
        )
    engine.dispose()
    return int(batch)


def worklist_entry(url: str, batch: int) -> tuple[str, str, str, bool] | None:
    engine = sqlalchemy.create_engine(db.sqlalchemy_url(url))
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT study, predicted_class, reviewed_label, disagrees FROM worklist_entries"
                " WHERE batch_id = :b"
            ),
            {"b": batch},
        ).first()
    engine.dispose()
    return None if row is None else (row[0], row[1], row[2], row[3])
