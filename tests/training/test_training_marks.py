"""Training uses reviewers' lesion marks (issue 22 item 3): a dataset with ANNOTATIONS.csv
trains without its train and validation slices marked 'no lesion visible', and the MLflow run
records how many marked slices and studies it used (the Model page reads them)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_models import LENIENT, use_home

from lung_model.data import lesion_marks
from lung_model.data.audit import inspect
from lung_model.data.lesion_marks import Annotation
from lung_model.data.split import Split, make_split
from lung_model.imaging.features import LesionPoint, nodule_candidates
from lung_model.imaging.images import read_gray
from lung_model.pipelines import retrain
from lung_model.platform.registry import SPLIT_ARTIFACT
from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import PROJECT_ROOT
from lung_model.training.families import fit_family
from lung_model.training.feature_model import FeatureModelConfig, augmented_features
from lung_model.training.job import train_and_log

pytestmark = pytest.mark.slow
FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"


def test_a_training_run_uses_and_counts_the_marks(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    settings = use_home(tmp_path / "home", pg_url, monkeypatch).model_copy(update=LENIENT)
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    split = make_split(inspect(data))
    fit = [p for p in split.paths("train") if split.label[p] == "malignant"][:2]
    test = split.paths("test")[0]
    marks = [
        Annotation(fit[0], "malignant", "lesion", 200.0, 210.0, 12.0, "rv-a", "2026-12-03", 1),
        Annotation(fit[1], "malignant", "no_lesion", None, None, None, "rv-a", "2026-12-03", 2),
        Annotation(test, split.label[test], "no_lesion", None, None, None, "rv-a", "", 3),
    ]
    lesion_marks.rewrite(data, [], marks)

    counts = retrain.split_data(str(data), settings)  # the DAG's step reports the same split
    assert sum(counts.slices["train"].values()) == len(split.paths("train")) - 1

    result = train_and_log(settings, FeatureModelConfig.tiny(), data, progress=False)

    run = configure_mlflow(settings).get_run(result.run_id)
    assert run.data.params["marks_no_lesion"] == "exclude"
    assert run.data.metrics["marked_slices"] == 2  # the test slice's mark is not used
    assert run.data.metrics["marked_no_lesion_slices"] == 1
    assert run.data.metrics["marked_lesion_slices"] == 1
    logged = Split.from_json(mlflow.artifacts.load_text(f"runs:/{result.run_id}/{SPLIT_ARTIFACT}"))
    assert fit[1] not in logged.part and fit[0] in logged.paths("train")
    assert logged.paths("test") == split.paths("test")  # evaluated on the patient labels


def test_the_feature_family_measures_the_marked_candidate_only_when_asked(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`FeatureModelConfig.mark_candidates`: a training slice marked 'lesion' away from its
    largest candidate has its nod_ lesion features measured at the mark, its re-acquired
    copies too; off (the default) and on test slices, nothing changes."""
    use_home(tmp_path / "home", pg_url, monkeypatch)
    split = make_split(inspect(FIXTURES))
    config = replace(FeatureModelConfig.tiny(), augment=1)
    path, test = (_two_candidates(split.paths(part), config) for part in ("train", "test"))
    points = {p: _on_second_candidate(p, config) for p in (path, test)}
    on = fit_family(replace(config, mark_candidates=True), split, FIXTURES, False, points)
    off = fit_family(config, split, FIXTURES, False, points)
    at = on.parts["train"].paths.index(path)
    assert on.parts["train"].x[at, 0] != off.parts["train"].x[at, 0]  # nod_largest
    assert np.array_equal(on.parts["train"].x[at, 2:], off.parts["train"].x[at, 2:])
    others = np.arange(len(on.parts["train"].y)) != at
    assert np.array_equal(on.parts["train"].x[others], off.parts["train"].x[others])
    assert np.array_equal(on.parts["test"].x, off.parts["test"].x)  # serving has no marks
    assert off.parts["train"].x[at, 0] == pytest.approx(_candidates(path, config)[0].share)
    gray = read_gray(FIXTURES / path).gray
    copies = augmented_features([gray], config)
    assert np.array_equal(augmented_features([gray], config, [None]), copies)
    moved = augmented_features([gray], config, [points[path]])
    assert moved[0, 0] != copies[0, 0] and np.array_equal(moved[0, 2:], copies[0, 2:])
    assert FeatureModelConfig().mark_candidates is False  # the bench did not favour it


def _candidates(path: str, config: FeatureModelConfig) -> list:
    return nodule_candidates(read_gray(FIXTURES / path).gray, config.features)


def _two_candidates(paths: list[str], config: FeatureModelConfig) -> str:
    return next(
        p for p in paths if len([c for c in _candidates(p, config) if c.share >= 0.002]) > 1
    )


def _on_second_candidate(path: str, config: FeatureModelConfig) -> LesionPoint:
    other = next(c for c in _candidates(path, config)[1:] if c.share >= 0.002)
    rows, cols = np.array(other.outline).T
    return LesionPoint(float(cols.mean()), float(rows.mean()), 30.0)
