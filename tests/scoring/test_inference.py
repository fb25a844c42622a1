"""Serving a logged model (`lung_model.scoring.inference`): loaded from the real MLflow
registry with the preprocessing and decision rule it was trained with; probabilities."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from tiny_models import TrainedRun

from lung_model.platform.registry import CHAMPION, register
from lung_model.platform.tracking import configure_mlflow
from lung_model.scoring.inference import LoadedModel, NoChampion, load_model
from lung_model.settings import CLASSES, Settings
from lung_model.training.metrics import classify

pytestmark = pytest.mark.slow


@pytest.fixture
def mine(trained_run: TrainedRun, pg_url: str) -> Settings:
    return trained_run.settings(pg_url, f"lung-test-inference-{uuid.uuid4().hex[:8]}")


def slices(trained_run: TrainedRun) -> list:
    return sorted(trained_run.data_dir.rglob("*.jpg"))[:6]


def test_a_logged_model_predicts_probabilities_with_its_own_decision_rule(
    trained_run: TrainedRun, mine: Settings
) -> None:
    version = register(trained_run.run_id, mine)

    model = LoadedModel.load(mine, f"models:/{mine.model_name}/{version}")

    assert (model.name, model.version) == (mine.model_name, version)
    assert model.image_size == 32 and model.data_version
    run = configure_mlflow(mine).get_run(trained_run.run_id)
    assert model.data_version == run.data.tags["data_version"]
    assert model.malignant_threshold is not None  # fitted with the model, shipped with it
    paths = slices(trained_run)
    batch = np.stack([model.prepare_file(p) for p in paths])
    assert batch.shape == (len(paths), 32, 32, 1)

    probabilities = model.predict(batch)

    assert probabilities.shape == (len(paths), len(CLASSES))
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    predictions = model.predict_files(paths)
    decided = classify(probabilities, model.malignant_threshold)
    assert [p.predicted_class for p in predictions] == [CLASSES[i] for i in decided]
    for prediction, row in zip(predictions, probabilities, strict=True):
        assert list(prediction.probabilities) == list(CLASSES)
        np.testing.assert_allclose(list(prediction.probabilities.values()), row, rtol=1e-6)
        assert (prediction.model_name, prediction.model_version) == (mine.model_name, version)
    np.testing.assert_allclose(model.predict_arrays(batch, batch_size=4), probabilities, rtol=1e-6)
    assert model.predict(batch[:0]).shape == (0, len(CLASSES))


def test_the_champion_is_loaded_once_and_a_missing_one_is_named(
    trained_run: TrainedRun, mine: Settings
) -> None:
    with pytest.raises(NoChampion):
        LoadedModel.load(mine)  # nothing registered under this name
    version = register(trained_run.run_id, mine)
    with pytest.raises(NoChampion):
        load_model(mine)  # registered, not champion

    configure_mlflow(mine).set_registered_model_alias(mine.model_name, CHAMPION, version)

    served = load_model(mine)
    assert served.version == version and load_model(mine) is served


def test_a_cnn_logged_before_model_families_still_loads_and_scores(
    mine: Settings, trained_run: TrainedRun
) -> None:
    """Logged as every model was before issue 12: keras flavour, no `family`, no study rule."""
    import mlflow

    from lung_model.imaging.preprocess import PreprocessConfig
    from lung_model.platform.registry import MODEL_ARTIFACT
    from lung_model.training.network import build_network, calibrated
    from lung_model.training.study_rule import StudyRule

    configure_mlflow(mine)
    network = calibrated(build_network(32, widths=(4, 8)), temperature=1.0)
    metadata = {"preprocess": PreprocessConfig(image_size=32).to_dict(), "malignant_threshold": 0.2}
    with mlflow.start_run() as run:
        mlflow.keras.log_model(
            network, name=MODEL_ARTIFACT, metadata=metadata, pip_requirements=["keras"]
        )
    version = register(run.info.run_id, mine)

    model = LoadedModel.load(mine, f"models:/{mine.model_name}/{version}")

    assert model.family == "cnn" and model.study_rule == StudyRule()  # the rule it was served by
    assert model.reduce_to == model.preprocess.reduce_to and model.malignant_threshold == 0.2
    probabilities = model.predict(model.prepare_files(slices(trained_run)))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
