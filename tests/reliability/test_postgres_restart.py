"""PostgreSQL restarted mid-study (a throwaway embedded server in a temporary folder, never
the shared one). Inside a batch's transaction: the CLI stops with one line and a non-zero
exit, and the rerun scores every slice exactly once with nothing left in processing/.
Between two batches: the study completes in the same run, its claim's lock (which the
restart ended) taken again before the next batch; a second scorer is refused the claim, or,
when it took the claim up before that, the first stops ("busy") and leaves the study to it."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import restart_postgres, score_cli, scored_once
from scoring_helpers import make_study, real_slices, rows
from scoring_toys import ToyPredictor
from sqlalchemy import Engine, create_engine, text

from lung_model.pipelines.batch_score import claim_ready, score_study
from lung_model.platform import db
from lung_model.settings import Settings

pytestmark = pytest.mark.slow
BLOCK_KEY = 727  # the test holds this advisory lock; the trigger makes the scorer wait on it
BLOCK_ON = "slice_008.jpg"  # in the third batch of 4 (slices sort by path)


@pytest.fixture
def embedded() -> Iterator[tuple[Settings, str]]:
    """A LUNG_HOME with its own embedded server, outside pytest's temporary folders: the
    server runs as another system user, and every pytest session on the machine makes
    /tmp/pytest-of-<user> private again, which would lock that user out mid-test."""
    home = Path(tempfile.mkdtemp(prefix="lung-pg-test-"))
    settings = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    try:
        yield settings, db.embedded_url(settings)
    finally:
        db.stop_embedded(settings)
        shutil.rmtree(home, ignore_errors=True)


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
    errors = [line for line in err.splitlines() if line.startswith("error")]  # TensorFlow and
    assert errors == [err.splitlines()[-1]], err  # a warning may come first; one error line, last
    assert errors[0].startswith("error: database unavailable: OperationalError: "), err
    [stranded] = list(settings.processing.glob("*/*"))  # kept for the next run, nothing lost
    assert len([p for p in stranded.rglob("*") if p.is_file()]) == 13
    with engine.begin() as conn:  # the server is back; the fault is over
        conn.execute(text("DROP TRIGGER reliability_block ON images"))

    rerun = score_cli(env)
    out, err = rerun.communicate(timeout=300)

    assert rerun.returncode == 0, err
    assert "S-restart: done, 12 files, 12 scored, 0 quarantined" in out
    scored_once(engine, settings.home, champion["version"], {"S-restart": 12})


def test_postgres_restarted_between_batches_the_study_completes(
    embedded: tuple[Settings, str],
) -> None:
    """Between two batches no transaction is open: the pool reconnects and the study finishes;
    the claim's advisory lock died with its session, and releasing it must not fail the study."""
    settings, _ = embedded
    settings.ensure_dirs()
    settings.score_batch_size = 4
    engine = db.get_engine(settings)
    make_study(settings.inbox, "S-between", real_slices(12, start=700))

    class RestartsOnTheSecondBatch(ToyPredictor):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            if self.calls == 1:
                restart_postgres(settings.pgdata)
            return super().predict(batch)

    model = RestartsOnTheSecondBatch(version="restart-between")
    [summary] = [score_study(c, model, settings, engine) for c in claim_ready(settings, engine)]

    assert (summary["status"], summary["n_scored"], summary["n_predicted"]) == ("done", 12, 12)
    scored_once(engine, settings.home, model.version, {"S-between": 12})


def test_after_a_restart_the_scorer_takes_its_lock_again_and_a_second_is_refused(
    embedded: tuple[Settings, str],
) -> None:
    """The restart ends the session holding the claim's lock; the scorer takes it again
    before its next batch, so a second scorer starting after that finds the claim held."""
    settings, _ = embedded
    settings.ensure_dirs()
    settings.score_batch_size = 4
    engine = db.get_engine(settings)
    make_study(settings.inbox, "S-fenced", real_slices(12, start=700))
    second: dict[str, object] = {}

    class SecondScorerAfterTheRestart(ToyPredictor):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            if self.calls == 1:  # before the second batch: the claim's lock dies
                restart_postgres(settings.pgdata)
            if self.calls == 2:  # before the third: the second batch re-took it
                [claim] = list(settings.processing.glob("*/*"))
                second["claimed"] = claim_ready(settings, engine)
                second["scored"] = score_study(claim, ToyPredictor(self.version), settings, engine)
            return super().predict(batch)

    model = SecondScorerAfterTheRestart(version=f"fenced-{id(settings)}")
    [summary] = [score_study(c, model, settings, engine) for c in claim_ready(settings, engine)]

    assert second["claimed"] == []  # not taken up as stranded: its lock is held again
    assert second["scored"]["status"] == "busy"  # type: ignore[index]
    assert (summary["status"], summary["n_scored"], summary["n_predicted"]) == ("done", 12, 12)
    scored_once(engine, settings.home, model.version, {"S-fenced": 12})


def test_a_scorer_whose_claim_was_taken_up_during_a_restart_stops_and_leaves_it(
    embedded: tuple[Settings, str],
) -> None:
    """A second scorer takes the claim up while the restart has freed its lock: the first
    stops before its next batch ("busy", nothing more written) and the second finishes it."""
    settings, _ = embedded
    settings.ensure_dirs()
    settings.score_batch_size = 4
    engine = db.get_engine(settings)
    make_study(settings.inbox, "S-taken", real_slices(12, start=700))
    version = f"taken-{id(settings)}"
    holding, finish = threading.Event(), threading.Event()
    second: dict[str, object] = {}

    class HoldsTheClaim(ToyPredictor):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            holding.set()  # it holds the claim's lock while it predicts
            finish.wait(timeout=120)
            return super().predict(batch)

    def second_scorer() -> None:
        [claim] = claim_ready(settings, engine)  # the claim looks stranded: its lock is free
        second["scored"] = score_study(claim, HoldsTheClaim(version), settings, engine)

    class RestartThenSecondScorer(ToyPredictor):
        def predict(self, batch: np.ndarray) -> np.ndarray:
            if self.calls == 1:
                restart_postgres(settings.pgdata)
                second["thread"] = thread = threading.Thread(target=second_scorer)
                thread.start()
                assert holding.wait(timeout=120)
            return super().predict(batch)

    first = RestartThenSecondScorer(version=version)
    [summary] = [score_study(c, first, settings, engine) for c in claim_ready(settings, engine)]
    finish.set()
    second["thread"].join(timeout=120)  # type: ignore[attr-defined]

    assert summary["status"] == "busy"  # stopped before its second batch
    assert rows(engine, "SELECT count(*) FROM images") == [(12,)]  # no row twice
    done = second["scored"]
    assert (done["status"], done["n_scored"], done["n_predicted"]) == ("done", 12, 8)  # type: ignore[index]
    scored_once(engine, settings.home, version, {"S-taken": 12})
