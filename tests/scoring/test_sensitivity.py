"""Acquisition sensitivity (issue 22 item 4): the guard's slices are scored again under a few
acquisition perturbations with the same model; each prediction keeps its perturbed calls and
the study result how many slices change their call, in the real PostgreSQL."""

from __future__ import annotations

import uuid
from functools import partial

import numpy as np
import pytest
from scoring_helpers import make_study, real_slices, rows
from sqlalchemy import Engine
from test_guard import GuardedToy, training_range

from lung_model.cli.score import _describe as describe_summary
from lung_model.imaging.acquisition import PERTURBATIONS, content_seed
from lung_model.imaging.images import read_gray
from lung_model.scoring import sensitivity
from lung_model.scoring.engine import Scorer
from lung_model.scoring.predictor import preparer_for, reduce_to_for, slice_class
from lung_model.settings import Settings

PICKED = ("smoothed", "narrower_window", "smaller_matrix")


def test_a_slice_changes_when_a_perturbation_changes_its_call() -> None:
    checked = sensitivity.check_study(
        [
            ("a.jpg", "normal", {"smoothed": "malignant", "narrower_window": "normal"}),
            ("b.jpg", "normal", {"smoothed": "normal", "narrower_window": "normal"}),
            ("c.jpg", "benign", {"smoothed": "malignant", "narrower_window": "normal"}),
            # decoded down to serve: compared with its full-resolution call, not the served one
            ("d.jpg", "benign", {"smoothed": "normal", sensitivity.FULL_RESOLUTION: "normal"}),
        ],
        ("smoothed", "narrower_window"),
    )
    assert checked is not None
    assert checked.changed == {"a.jpg": ["smoothed"], "c.jpg": ["smoothed", "narrower_window"]}
    assert (checked.n_changed, checked.n_slices, checked.share) == (2, 4, 0.5)
    assert checked.by_perturbation() == {"smoothed": 2, "narrower_window": 1}
    assert checked.describe() == (
        "calls change under another export on 2 of 4 slices (smoothed 2, narrower window 1)"
    )
    assert sensitivity.Sensitivity.from_dict(checked.as_dict()) == checked
    assert sensitivity.described(checked.as_dict()) == checked.describe()
    assert sensitivity.described(None) == ""
    assert sensitivity.check_study([], ("smoothed",)) is None
    calm = sensitivity.Sensitivity(("smoothed",), 12)
    assert calm.share == 0.0
    assert calm.describe() == "calls do not change under another export (12 slices: smoothed)"


def test_the_setting_names_known_perturbations_only() -> None:
    assert sensitivity.chosen(" smoothed, jpeg ") == ("smoothed", "jpeg")
    assert sensitivity.chosen("") == ()
    with pytest.raises(ValueError, match="unknown \\['blurred'\\]"):
        sensitivity.chosen("smoothed,blurred")


def expected_calls(model: GuardedToy, path: str) -> dict[str, str]:
    """The toy's calls on one slice under each perturbation, computed here independently."""
    gray = read_gray(path).gray
    prepare, seed = preparer_for(model), content_seed(gray)
    changes = {name: partial(PERTURBATIONS[name], seed=seed) for name in PICKED}
    if reduce_to_for(model):  # served decoded down (a 32 px toy): its full-resolution call too
        changes[sensitivity.FULL_RESOLUTION] = np.asarray
    calls = {}
    for name, change in changes.items():
        x = np.asarray(prepare(change(gray)), dtype=np.float32)
        calls[name] = slice_class(model, model.predict(x[None])[0])
    return calls


SENSITIVITY_SQL = (
    "SELECT r.acquisition_sensitivity, r.sensitivity_share"
    " FROM study_results r JOIN scan_batches b ON b.id = r.batch_id WHERE b.study = :study"
)
PERTURBED_SQL = (
    "SELECT i.path, p.predicted_class, p.perturbed_calls FROM images i"
    " JOIN scan_batches b ON b.id = i.batch_id JOIN predictions p ON p.image_sha256 = i.sha256"
    " AND p.model_version = :version WHERE b.study = :study AND i.acquisition IS NOT NULL"
    " ORDER BY i.path"
)


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "worker-processes"])
def test_scoring_records_the_calls_under_each_perturbation_and_the_study_share(
    settings: Settings, engine: Engine, processes: bool
) -> None:
    settings.guard_slices, settings.score_batch_size = 4, 3
    settings.guard_perturbations = ",".join(PICKED)
    settings.score_processes_min_files = 1 if processes else 0
    slices = real_slices(8, start=300)
    toy = GuardedToy(f"sens-{uuid.uuid4().hex[:6]}", acquisition_range=training_range(slices))
    study = f"S-sens-{'p' if processes else 't'}"
    make_study(settings.inbox, study, slices)
    summary = Scorer(toy, engine, settings).score_claimed(settings.inbox / study)

    checked = rows(engine, PERTURBED_SQL, study=study, version=toy.version)
    assert summary.status == "done" and len(checked) == 4  # the guard's slices only
    archived = settings.archive / study
    for path, _, perturbed in checked:
        assert perturbed == expected_calls(toy, str(archived / str(path)))
    [(stored, share)] = rows(engine, SENSITIVITY_SQL, study=study)
    expected = sensitivity.check_study(checked, PICKED)
    assert expected is not None and sensitivity.Sensitivity.from_dict(stored) == expected
    assert share == expected.share and expected.n_slices == 4
    assert summary.result["acquisition_sensitivity"] == expected.describe()
    assert expected.describe() in describe_summary(summary)  # what `score` prints

    # deterministic: the same slices as another study give the same answer
    make_study(settings.inbox, f"{study}-again", slices)
    Scorer(toy, engine, settings).score_claimed(settings.inbox / f"{study}-again")
    assert rows(engine, SENSITIVITY_SQL, study=f"{study}-again") == [(stored, share)]


def test_no_perturbations_set_records_no_sensitivity(settings: Settings, engine: Engine) -> None:
    settings.guard_slices, settings.guard_perturbations = 2, ""
    slices = real_slices(3, start=500)
    toy = GuardedToy(f"nosens-{uuid.uuid4().hex[:6]}", acquisition_range=training_range(slices))
    make_study(settings.inbox, "S-nosens", slices)
    summary = Scorer(toy, engine, settings).score_claimed(settings.inbox / "S-nosens")
    assert summary.status == "done" and "acquisition_sensitivity" not in summary.result
    assert rows(engine, SENSITIVITY_SQL, study="S-nosens") == [(None, None)]
    assert all(
        p is None for *_, p in rows(engine, PERTURBED_SQL, study="S-nosens", version=toy.version)
    )
