"""The scoring DAG's task functions on the real PostgreSQL: each scoring task loads a model
only when there is work for it, claims and scores studies one at a time until none is left
(sharing them with the other tasks), a study that raises does not stop the others, and the
task's retry scores only that study again."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from scoring_helpers import make_study, real_slices
from scoring_toys import ToyPredictor
from sqlalchemy import text

from lung_model.pipelines import batch_score
from lung_model.platform.db import get_engine
from lung_model.scoring import inbox
from lung_model.settings import Settings


class FailsOnOneCall(ToyPredictor):
    """Raises on its second predict call (the second study's only batch), then never."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.calls == 1:
            self.calls += 1
            raise RuntimeError("the model broke on this study")
        return super().predict(batch)


def test_a_study_that_raises_fails_the_task_after_the_others_and_its_retry_only(
    settings: Settings,
) -> None:
    slices = real_slices(6, start=720)
    for index in range(3):
        make_study(settings.inbox, f"isolated-{index}", slices[index * 2 : index * 2 + 2])
    model = FailsOnOneCall(version=f"ready-{uuid.uuid4().hex[:8]}")
    seen: list[str] = []

    with pytest.raises(batch_score.StudiesFailed, match="1 of 3 studies failed") as failed:
        batch_score.score_ready(model, settings, on_study=lambda s: seen.append(s["status"]))
    assert seen == ["done", "error", "done"]  # the third was scored after the second raised
    label = batch_score.outcome_label(failed.value.summaries)
    assert label == "isolated-0: done, isolated-1: error, isolated-2: done"
    assert sorted(p.name for p in settings.archive.iterdir()) == ["isolated-0", "isolated-2"]
    [stranded] = batch_score.claimable(settings)  # the failed study's claim, held by nobody
    assert stranded.name == "isolated-1" and stranded.parent.parent == settings.processing

    retried = batch_score.score_ready(model, settings)  # the task's retry
    assert [(s["study"], s["status"]) for s in retried] == [("isolated-1", "done")]
    with get_engine(settings).connect() as connection:
        batches = connection.execute(
            text("SELECT study, status FROM scan_batches WHERE model_version = :v ORDER BY 1"),
            {"v": model.version},
        ).all()
    # the failed study's batch row is reused by its retry: one batch per study
    assert [tuple(b) for b in batches] == [(f"isolated-{i}", "done") for i in range(3)]
    assert batch_score.summarise(retried)["studies"] == 1
    assert batch_score.outcome_label([]) == "nothing to score"


def test_a_claim_another_scorer_holds_is_left_to_it_and_loads_no_model(
    settings: Settings,
) -> None:
    make_study(settings.inbox, "held", real_slices(2, start=740))
    [held] = batch_score.claim_ready(settings)
    engine = get_engine(settings)
    with inbox.study_lock(engine, inbox.claim_id(held)) as lock:  # another scorer's
        assert lock and batch_score.claimable(settings) == []
        # the task returns before loading a model: no MLflow store is configured here
        assert batch_score.score_ready_studies(settings, model_uri="models:/none/1") == []
        model = ToyPredictor(version=f"held-{uuid.uuid4().hex[:8]}")
        assert batch_score.score_ready(model, settings) == []  # tried once, `busy`, not reported
    assert batch_score.claimable(settings) == [held]  # released: stranded, claimable again


def test_a_second_task_loads_no_model_for_a_study_dropped_alone(settings: Settings) -> None:
    make_study(settings.inbox, "alone", real_slices(1, start=760))
    assert len(batch_score.claimable(settings)) == 1
    assert batch_score.score_ready_studies(settings, slot=1, model_uri="models:/none/1") == []
    assert (settings.inbox / "alone").is_dir()  # left for slot 0


def test_outcome_label_is_cut_with_a_count() -> None:
    summaries = [{"study": f"study-{i:03d}", "status": "done"} for i in range(40)]
    label = batch_score.outcome_label(summaries, limit=80)
    assert label.startswith("study-000: done, study-001: done, study-002: done")
    assert label.endswith(" ... (40 studies)") and len(label) <= 80
