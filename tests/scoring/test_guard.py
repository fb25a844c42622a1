"""The acquisition guard (issue 19, item 4): a slice outside the model's acquisition range is
flagged and one inside is not; a study mostly outside is still scored and marked, with which
measurement and how far, in the real PostgreSQL; a model without a range is unguarded."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from scoring_helpers import make_study, real_slices, rows
from scoring_toys import ProcessToyPredictor, ToyPredictor
from sqlalchemy import Engine
from tiny_models import FEATURE_RUN, TrainedRun

from lung_model.cli.score import _describe as describe_summary
from lung_model.imaging.acquisition import acquisition_range, measure
from lung_model.imaging.images import read_gray
from lung_model.scoring import guard
from lung_model.scoring.decode import decode_file
from lung_model.scoring.engine import Scorer
from lung_model.scoring.files import InputFile
from lung_model.scoring.inference import LoadedModel
from lung_model.scoring.predictor import input_shape_for, preparer_for
from lung_model.settings import Settings

ALLOWED: guard.Range = {"noise": (0.004, 0.009), "rows": (512.0, 512.0)}


def test_a_slice_outside_the_range_is_flagged_and_one_inside_is_not() -> None:
    assert guard.outside({"noise": 0.006, "rows": 512.0}, ALLOWED) == []
    assert guard.outside({"noise": 0.002, "rows": 512.0}, ALLOWED) == ["noise"]
    assert guard.outside({"noise": 0.006, "rows": 631.0}, ALLOWED) == ["rows"]
    assert guard.outside({"noise": 0.004, "rows": 512.0}, ALLOWED) == []  # bounds are inside


def test_a_study_is_marked_when_enough_of_its_slices_lie_outside() -> None:
    smooth = [{"noise": 0.002, "rows": 512.0}] * 3 + [{"noise": 0.006, "rows": 512.0}]
    [deviation] = guard.check_study(smooth, ALLOWED, min_share=0.5)
    assert (deviation.measurement, deviation.side, deviation.value) == ("noise", "below", 0.002)
    assert (deviation.n_outside, deviation.n_slices) == (3, 4)
    assert deviation.describe() == (
        "pixel noise 0.002, 50% below the lowest this model learned from (range 0.004 to 0.009);"
        " 3 of 4 slices outside"
    )
    assert guard.check_study(smooth, ALLOWED, min_share=0.8) == []  # 3 of 4 is not enough
    assert guard.check_study(smooth[3:], ALLOWED, min_share=0.5) == []
    assert guard.Deviation.from_dict(deviation.as_dict()) == deviation
    assert guard.summary_line([deviation.as_dict()]) == "pixel noise below"
    assert guard.summary_line(None) == guard.summary_line([]) == ""
    assert guard.unlike_training([deviation.as_dict()]) == [deviation.describe()]
    assert guard.unlike_training(None) == guard.unlike_training([]) == []


def test_a_model_without_a_range_is_unguarded(settings: Settings, engine: Engine) -> None:
    assert guard.model_range(ToyPredictor("no-range")) is None
    assert guard.parse_range({"noise": [0.1, 0.2]}) == {"noise": (0.1, 0.2)}
    assert Scorer(ToyPredictor("no-range"), engine, settings).acquisition_range is None


def test_spread_picks_slices_evenly_through_the_study() -> None:
    paths = [f"s{i:02d}" for i in range(20)]
    assert guard.spread(paths, 3) == {"s00", "s10", "s19"}
    assert guard.spread(paths[:2], 3) == {"s00", "s01"}
    assert guard.spread(paths, 0) == set()


@dataclass
class GuardedToy(ProcessToyPredictor):
    """A toy model that ships an acquisition range, as a trained model's metadata does."""

    acquisition_range: dict[str, list[float]] | None = None


def training_range(slices: list[Path]) -> dict[str, list[float]]:
    return acquisition_range([measure(read_gray(p).gray) for p in slices], low=0.0, high=100.0)


STUDY_SQL = (
    "SELECT r.acquisition_range, r.acquisition_outside, r.predicted_class"
    " FROM study_results r JOIN scan_batches b ON b.id = r.batch_id WHERE b.study = :study"
)
MEASURED_SQL = (
    "SELECT i.path, i.acquisition FROM images i JOIN scan_batches b ON b.id = i.batch_id"
    " WHERE b.study = :study ORDER BY i.path"
)


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "worker-processes"])
def test_scoring_marks_a_study_outside_the_range_and_not_one_inside(
    settings: Settings, engine: Engine, processes: bool
) -> None:
    settings.guard_slices, settings.guard_min_share = 4, 0.5
    settings.score_batch_size = 3
    settings.score_processes_min_files = 1 if processes else 0
    slices = real_slices(8)
    learned = training_range(slices)
    version = f"guard-{uuid.uuid4().hex[:6]}"
    inside = GuardedToy(version, acquisition_range=learned)
    suffix = "p" if processes else "t"
    make_study(settings.inbox, f"S-like-{suffix}", slices)
    summary = Scorer(inside, engine, settings).score_claimed(settings.inbox / f"S-like-{suffix}")

    [(allowed, outside_, label)] = rows(engine, STUDY_SQL, study=f"S-like-{suffix}")
    assert summary.status == "done" and label == summary.result["predicted_class"]
    assert allowed == learned and outside_ == [] and summary.result["unlike_training"] == []
    measured = [m for _, m in rows(engine, MEASURED_SQL, study=f"S-like-{suffix}") if m]
    assert len(measured) == 4  # LUNG_GUARD_SLICES of the 8, not every slice
    assert all(set(m) == set(guard.MEASUREMENTS) for m in measured)

    # the same slices against a range of much noisier scans: marked, still scored
    noisy = {**learned, "noise": [10 * learned["noise"][1], 20 * learned["noise"][1]]}
    smoother = GuardedToy(f"{version}-n", acquisition_range=noisy)
    make_study(settings.inbox, f"S-unlike-{suffix}", slices)
    marked = Scorer(smoother, engine, settings).score_claimed(settings.inbox / f"S-unlike-{suffix}")
    [(_, outside_, _)] = rows(engine, STUDY_SQL, study=f"S-unlike-{suffix}")
    assert marked.status == "done" and marked.n_scored == 8
    [deviation] = [guard.Deviation.from_dict(d) for d in outside_]
    assert (deviation.measurement, deviation.side, deviation.n_outside) == ("noise", "below", 4)
    assert deviation.value < noisy["noise"][0]
    assert marked.result["unlike_training"] == [deviation.describe()]
    assert "below the lowest this model learned from" in deviation.describe()
    line = describe_summary(marked)  # what `python -m lung_model score` prints
    assert f"{guard.UNLIKE_TRAINING}: {deviation.describe()}" in line
    assert guard.UNLIKE_TRAINING not in describe_summary(summary)


def test_an_unguarded_model_measures_nothing_and_records_no_check(
    settings: Settings, engine: Engine
) -> None:
    make_study(settings.inbox, "S-unguarded", real_slices(4))
    toy = ToyPredictor(f"unguarded-{uuid.uuid4().hex[:6]}")
    summary = Scorer(toy, engine, settings).score_claimed(settings.inbox / "S-unguarded")
    assert summary.status == "done" and "unlike_training" not in summary.result
    assert rows(engine, STUDY_SQL, study="S-unguarded") == [
        (None, None, summary.result["predicted_class"])
    ]
    assert all(m is None for _, m in rows(engine, MEASURED_SQL, study="S-unguarded"))


def test_a_slice_the_guard_cannot_measure_is_still_scored() -> None:
    def broken(gray: object, height: int, width: int) -> dict[str, float]:
        raise ValueError("no lung field")

    [path] = real_slices(1)
    file = InputFile(path.name, path, path)
    toy = ToyPredictor("unmeasurable")
    decoded = decode_file(file, preparer_for(toy), input_shape_for(toy), None, 256, broken)
    assert decoded.row.status == "scored" and decoded.x is not None
    assert decoded.row.acquisition is None
    measured = decode_file(
        file, preparer_for(toy), input_shape_for(toy), None, 256, guard.measure_slice
    )
    assert measured.row.acquisition == guard.measure_slice(read_gray(path).gray, 512, 512)


def test_a_trained_model_ships_its_range_and_scores_guarded(
    feature_run: TrainedRun, pg_url: str, settings: Settings, engine: Engine
) -> None:
    """The training job logs the range with the model; loading it guards the scorer, and a
    model logged before (no range in its metadata) loads unguarded."""
    model = LoadedModel.load(feature_run.settings(pg_url, FEATURE_RUN), f"models:/{FEATURE_RUN}/1")
    assert model.acquisition_range is not None
    assert set(model.acquisition_range) == set(guard.MEASUREMENTS)
    settings.guard_slices, settings.score_processes_min_files = 2, 0
    study = make_study(settings.home / "sites", "S-trained", real_slices(3))
    summary = Scorer(model, engine, settings).score_in_place(study)
    assert summary.status == "done" and isinstance(summary.result["unlike_training"], list)
    [(allowed, outside_, _)] = rows(engine, STUDY_SQL, study="S-trained")
    assert allowed == model.acquisition_range and isinstance(outside_, list)
    before = LoadedModel(model.network, model.name, model.version)  # no range, as logged before
    assert before.acquisition_range is None
    assert Scorer(before, engine, settings).acquisition_range is None
