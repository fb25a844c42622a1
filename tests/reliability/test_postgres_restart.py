"""PostgreSQL restarted while the scorer is inside a batch's transaction (a throwaway embedded
server in a temporary folder, never the shared one): the CLI stops with one line and a
non-zero exit, and the rerun scores every slice exactly once with nothing left in processing/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import restart_postgres, score_cli, scored_once
from scoring_helpers import make_study, real_slices, rows
from sqlalchemy import Engine, create_engine, text

from lung_model import db
from lung_model.settings import Settings

pytestmark = pytest.mark.slow
BLOCK_KEY = 727  # the test holds this advisory lock; the trigger makes the scorer wait on it
BLOCK_ON = "slice_008.jpg"  # in the third batch of 4 (slices sort by path)
# TensorFlow's C++ start-up lines on stderr (absl logging), before any of ours
TENSORFLOW_CHATTER = ("WARNING: All log messages before absl", "I0000 ", "To enable the following")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    settings = Settings(_env_file=None, home=tmp_path / "home")  # type: ignore[call-arg]
    try:
        yield settings, db.embedded_url(settings)
    finally:
        db.stop_embedded(settings)


def _block_inserts_of(engine: Engine, path: str) -> None:
    """Make the insert of one image row wait for the test's advisory lock (test-only trigger)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION reliability_block() RETURNS trigger LANGUAGE plpgsql AS"
                f" $$ BEGIN PERFORM pg_advisory_xact_lock({BLOCK_KEY}); RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER reliability_block BEFORE INSERT ON images FOR EACH ROW"
                f" WHEN (NEW.path = '{path}') EXECUTE FUNCTION reliability_block()"
            )
        )


def _wait_until_blocked(engine: Engine, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND objid = :k AND NOT granted"
                ),
                {"k": BLOCK_KEY},
            ).scalar()
        if waiting:
            return
        time.sleep(0.2)
    raise TimeoutError("the scorer never reached the blocked batch")


def test_postgres_restarted_mid_batch_then_rerun_scores_exactly_once(
    embedded: tuple[Settings, str], champion: dict[str, str]
) -> None:
    settings, url = embedded
    settings.ensure_dirs()
    engine = db.get_engine(settings)
    make_study(settings.inbox, "S-restart", real_slices(12, start=700))
    _block_inserts_of(engine, BLOCK_ON)
    env = {
        "LUNG_HOME": str(settings.home),
        "DATABASE_URL": url,
        "LUNG_SCORE_BATCH_SIZE": "4",
        "MLFLOW_TRACKING_URI": champion["MLFLOW_TRACKING_URI"],
        "LUNG_MODEL_NAME": champion["LUNG_MODEL_NAME"],
    }
    holder = create_engine(db.sqlalchemy_url(url)).connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": BLOCK_KEY})
    scorer = score_cli(env)
    try:
        _wait_until_blocked(engine)
        assert rows(engine, "SELECT count(*) FROM images WHERE status = 'scored'") == [
            (8,)
        ]  # batches 1 and 2 committed; batch 3 is inside its transaction
        restart_postgres(settings.pgdata)
        out, err = scorer.communicate(timeout=120)
    finally:
        scorer.kill()
        holder.invalidate()

    assert scorer.returncode == 3, (out, err)
    errors = [line for line in err.splitlines() if not line.startswith(TENSORFLOW_CHATTER)]
    assert errors == [errors[0]] and errors[0].startswith("error: database unavailable: "), err
    [stranded] = list(settings.processing.glob("*/*"))  # kept for the next run, nothing lost
    assert len([p for p in stranded.rglob("*") if p.is_file()]) == 13
    with engine.begin() as conn:  # the server is back; the fault is over
        conn.execute(text("DROP TRIGGER reliability_block ON images"))

    rerun = score_cli(env)
    out, err = rerun.communicate(timeout=300)

    assert rerun.returncode == 0, err
    assert "S-restart: done, 12 files, 12 scored, 0 quarantined" in out
    scored_once(engine, settings.home, champion["version"], {"S-restart": 12})
