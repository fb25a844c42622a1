"""End to end on the fixtures: train (tiny) -> MLflow run -> register -> gate -> promote /
rollback, then serve it: preprocessing parity, calibrated probabilities, Grad-CAM.

Real MLflow (a temporary SQLite store) and the real PostgreSQL; a tiny network and 32 px.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from tiny_models import LENIENT

from lung_model import settings as settings_module
from lung_model.cli.main import main
from lung_model.data.audit import DataIntegrityError
from lung_model.data.split import Split
from lung_model.imaging.images import read_gray
from lung_model.platform.orphan_runs import HOST_TAG, PID_TAG, REASON_TAG, STARTED_TAG
from lung_model.platform.registry import CHAMPION, SPLIT_ARTIFACT, register
from lung_model.platform.tracking import configure_mlflow
from lung_model.scoring.gradcam import gradcam
from lung_model.scoring.inference import LoadedModel, load_model
from lung_model.settings import CLASSES, Settings
from lung_model.training.fit import TrainConfig, load_part
from lung_model.training.job import TrainResult, train_and_log
from lung_model.training.metrics import classify

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"
TINY = TrainConfig.tiny()


@pytest.fixture(scope="module")
def lenient(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Floors a 2-epoch network can pass; a temporary MLflow store; the session database."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUNG_HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("DATABASE_URL", pg_url)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        settings_module.get_settings.cache_clear()
        yield Settings(
            model_name="lung-test-gate",
            **LENIENT,
        )
    settings_module.get_settings.cache_clear()


@pytest.fixture(scope="module")
def orphan(lenient: Settings) -> str:
    """A training run whose process was killed before the next one: that one ends it."""
    from orphan_helpers import orphaned_run

    client = configure_mlflow(lenient)
    experiment = client.get_experiment_by_name(lenient.experiment)
    return orphaned_run(client, experiment.experiment_id, "train-killed")[0]


@pytest.fixture(scope="module")
def trained(lenient: Settings, orphan: str) -> TrainResult:
    return train_and_log(lenient, TINY, FIXTURES, progress=False)


def test_training_run_logs_everything(trained: TrainResult, lenient: Settings, orphan: str) -> None:
    client = configure_mlflow(lenient)
    killed = client.get_run(orphan)
    assert killed.info.status == "KILLED"
    assert killed.data.tags[REASON_TAG].endswith(" by the next training run")
    run = client.get_run(trained.run_id)
    assert run.data.tags["data_version"].startswith("local-")
    assert len(run.data.tags["git_commit"]) >= 40
    assert run.data.tags[PID_TAG] == str(os.getpid())  # who runs it: ended as KILLED if it dies
    assert {HOST_TAG, STARTED_TAG} <= set(run.data.tags)
    assert run.data.params["image_size"] == "32"
    for key in (
        "test_macro_f1",
        "test_macro_f1_ci_low",
        "test_recall_malignant",
        "test_ece",
        "test_roc_auc_malignant",
        "test_study_macro_f1",
        "val_accuracy",
        "temperature",
        "test_invariance_smoothed_calls_changed",
        "test_invariance_worst_normal_as_malignant",
        "test_noise_matched_malignant_patients",
    ):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(trained.run_id, "plots")}
    assert {
        "plots/confusion_matrix.png",
        "plots/roc.png",
        "plots/reliability.png",
        "plots/training_curves.png",
        "plots/invariance.png",
    } <= artifacts
    audit = mlflow.artifacts.load_dict(f"runs:/{trained.run_id}/reports/audit.json")
    assert audit["n_files"] == 18 and audit["errors"] == []
    split = Split.from_json(mlflow.artifacts.load_text(f"runs:/{trained.run_id}/{SPLIT_ARTIFACT}"))
    assert len(split.paths("test")) == 6
    info = mlflow.models.get_model_info(trained.model_uri)
    assert info.flavors.keys() >= {"keras", "python_function"}
    assert info.signature is not None and info.saved_input_example_info is not None
    assert info.metadata["preprocess"]["image_size"] == 32
    ranges = info.metadata["acquisition_range"]  # measured on the training slices
    assert ranges["rows"][1] == 512 and 0 < ranges["noise"][0] < ranges["noise"][1] < 0.02
    assert 0 <= trained.test["slice"]["accuracy"] <= 1
    history = client.get_metric_history(trained.run_id, "epoch_val_macro_f1")
    assert len(history) == TINY.epochs


def test_serving_matches_training(trained: TrainResult, lenient: Settings) -> None:
    lenient = lenient.model_copy(update={"model_name": "lung-test-serving"})
    version = register(trained.run_id, lenient)
    model = LoadedModel.load(lenient, f"models:/{lenient.model_name}/{version}")
    assert (model.version, model.image_size) == (version, 32)
    split = Split.from_json(mlflow.artifacts.load_text(f"runs:/{trained.run_id}/{SPLIT_ARTIFACT}"))
    part = load_part(split, "test", FIXTURES, TINY.preprocess())
    served = np.stack([model.prepare_file(FIXTURES / p) for p in part.paths])
    np.testing.assert_array_equal(served, part.x)  # identical arrays, same function

    probabilities = model.predict(part.x)
    assert probabilities.shape == (6, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    predictions = model.predict_files([FIXTURES / p for p in part.paths])
    # serving applies the decision rule fitted with the model, as the evaluation did
    threshold = trained.test["malignant_threshold"]
    assert threshold is not None and model.malignant_threshold == pytest.approx(threshold)
    decided = classify(probabilities, threshold)
    assert [p.predicted_class for p in predictions] == [CLASSES[i] for i in decided]
    assert predictions[0].model_version == version
    # the logged run's test metrics came from the same probabilities and rule
    labels = np.array([CLASSES.index(split.label[p]) for p in part.paths])
    assert (decided == labels).mean() == pytest.approx(trained.test["slice"]["accuracy"])

    heatmap = gradcam(model, part.x[0], CLASSES.index("malignant"))
    assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert model.gradcam(read_gray(FIXTURES / part.paths[0]).gray).shape == (32, 32)

    client = configure_mlflow(lenient)
    client.set_registered_model_alias(lenient.model_name, CHAMPION, version)
    assert load_model(lenient) is load_model(lenient)  # loaded once


def test_bad_data_fails_before_any_run(lenient: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    (data / "Normal cases" / "Normal case (1).jpg").write_bytes(b"not an image")
    with pytest.raises(DataIntegrityError, match="unreadable"):
        train_and_log(lenient, TINY, data, progress=False)


def test_cli_train_prints_run_version_and_decision(
    lenient: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real CNN configuration, cut to 2 epochs at 32 px by the command's flags."""
    monkeypatch.setenv("LUNG_MODEL_NAME", "lung-test-cli")
    for name, value in LENIENT.items():
        monkeypatch.setenv(f"LUNG_{name.upper()}", str(value))
    settings_module.get_settings.cache_clear()
    argv = ["train", "--config", "cnn", "--epochs", "2", "--image-size", "32"]
    assert main([*argv, "--data", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert "run " in out and "macro-F1" in out and "model version 1: promoted" in out
    settings_module.get_settings.cache_clear()
