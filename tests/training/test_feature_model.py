"""The feature model family end to end on the fixture slices: trained and logged by the
training job, loaded through the one serving interface, scored by the scorer, explained,
and deterministic (two trainings, identical predictions)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from tiny_models import FIXTURE_DATA, store_settings

from lung_model.platform.registry import register
from lung_model.scoring.inference import LoadedModel
from lung_model.settings import CLASSES, Settings
from lung_model.training.feature_model import FeatureModelConfig
from lung_model.training.job import TrainResult, train_and_log
from lung_model.training.metrics import classify

pytestmark = pytest.mark.slow
TINY = FeatureModelConfig.tiny()


@pytest.fixture(scope="module")
def store(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("features")
    return store_settings(home, pg_url).model_copy(update={"model_name": "lung-test-features"})


@pytest.fixture(scope="module")
def trained(store: Settings) -> TrainResult:
    return train_and_log(store, TINY, FIXTURE_DATA, progress=False)


@pytest.fixture(scope="module")
def served(store: Settings, trained: TrainResult) -> LoadedModel:
    version = register(trained.run_id, store)
    return LoadedModel.load(store, f"models:/{store.model_name}/{version}")


def test_the_logged_model_carries_its_family_rules_signature_and_example(
    trained: TrainResult,
) -> None:
    info = mlflow.models.get_model_info(trained.model_uri)
    assert info.metadata["family"] == "features"
    assert {"features", "temperature", "malignant_threshold", "study_rule"} <= set(info.metadata)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert trained.test["study_rule"]["statistic"] == TINY.study_statistic


def test_served_like_any_model_and_the_pyfunc_reads_slice_files(
    served: LoadedModel, trained: TrainResult
) -> None:
    assert served.family == "features" and served.reduce_to is None  # full-resolution decode
    files = sorted(FIXTURE_DATA.glob("*/*.jpg"))[:4]
    x = served.prepare_files(files)
    assert x.shape == (4, *served.input_shape) and x.dtype == np.float32
    probabilities = served.predict(x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    predictions = served.predict_files(files)
    decided = classify(probabilities, served.malignant_threshold)
    assert [p.predicted_class for p in predictions] == [CLASSES[i] for i in decided]

    pyfunc = mlflow.pyfunc.load_model(trained.model_uri)  # what any MLflow client sees
    table = pyfunc.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    np.testing.assert_allclose(table[[f"p_{c}" for c in CLASSES]].to_numpy(), probabilities)
    assert table["predicted_class"].tolist() == [p.predicted_class for p in predictions]


def test_contributions_add_up_to_the_slice_score(served: LoadedModel) -> None:
    x = served.prepare_files(sorted(FIXTURE_DATA.glob("Malignant cases/*.jpg"))[:1])
    contributions = served.network.contributions(x[0], "malignant")
    assert contributions.shape == (len(served.network.feature_names) + 1,)
    raw = served.network.logits(x)[0, CLASSES.index("malignant")]
    assert contributions.sum() == pytest.approx(raw, abs=1e-6)  # exact TreeSHAP


def test_two_trainings_give_identical_predictions(
    store: Settings, trained: TrainResult, served: LoadedModel
) -> None:
    again = train_and_log(store, TINY, FIXTURE_DATA, progress=False)
    other = LoadedModel.load(store, f"models:/{store.model_name}/{register(again.run_id, store)}")
    x = served.prepare_files(sorted(FIXTURE_DATA.glob("*/*.jpg")))
    np.testing.assert_array_equal(other.predict(x), served.predict(x))
    assert again.test["slice"] == trained.test["slice"]
