"""Training uses reviewers' lesion marks (issue 22 item 3): a dataset with ANNOTATIONS.csv
trains without its train and validation slices marked 'no lesion visible', and the MLflow run
records how many marked slices and studies it used (the Model page reads them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_models import LENIENT, use_home

from lung_model.data import lesion_marks
from lung_model.data.audit import inspect
from lung_model.data.lesion_marks import Annotation
from lung_model.data.split import Split, make_split
from lung_model.pipelines import retrain
from lung_model.platform.registry import SPLIT_ARTIFACT
from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import PROJECT_ROOT
from lung_model.training.feature_model import FeatureModelConfig
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
    lesion_marks.rewrite(data, "/none/", marks)

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
