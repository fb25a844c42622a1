"""The fit loop (`lung_model.training.fit.fit`) on tiny random slices: the same config and
seed give the same network; the curves have one point per epoch; the decision rule and the
temperature come back with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lung_model.settings import CLASSES
from lung_model.training.fit import Fitted, Part, TrainConfig, fit

pytestmark = pytest.mark.slow
CONFIG = replace(TrainConfig.tiny(), epochs=3, seed=7)


def random_part(n: int, seed: int) -> Part:
    rng = np.random.default_rng(seed)
    x = rng.random((n, CONFIG.image_size, CONFIG.image_size, 1), dtype=np.float32)
    y = np.arange(n) % len(CLASSES)  # every class in every part
    return Part(x, y.astype(np.int64), np.array([f"p{i // 2}" for i in range(n)]))


TRAIN, VAL = random_part(12, 1), random_part(6, 2)


def weights(fitted: Fitted) -> list[np.ndarray]:
    return [np.asarray(w) for w in fitted.network.get_weights()]


@pytest.fixture(scope="module")
def first() -> Fitted:
    return fit(CONFIG, TRAIN, VAL, progress=False)


def test_two_fits_of_one_config_are_identical(first: Fitted) -> None:
    again = fit(CONFIG, TRAIN, VAL, progress=False)

    assert len(weights(first)) == len(weights(again))
    for a, b in zip(weights(first), weights(again), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.network.predict(VAL.x), again.network.predict(VAL.x))
    assert again.history == first.history and again.temperature == first.temperature


def test_another_seed_gives_another_network(first: Fitted) -> None:
    other = fit(replace(CONFIG, seed=8), TRAIN, VAL, progress=False)

    assert any(
        not np.array_equal(a, b) for a, b in zip(weights(first), weights(other), strict=True)
    )


def test_history_has_one_point_per_epoch_and_the_rule_comes_back(first: Fitted) -> None:
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "val_macro_f1"} <= set(first.history)
    assert {len(curve) for curve in first.history.values()} == {CONFIG.epochs}
    assert first.best_epoch == CONFIG.epochs  # no early stopping: the last epoch is kept
    assert first.temperature > 0
    assert first.malignant_threshold == CONFIG.malignant_threshold

    logits = first.network.predict(VAL.x, verbose=0)
    assert logits.shape == (len(VAL.y), len(CLASSES)) and np.isfinite(logits).all()


def test_reacquired_copies_train_reproducibly_and_change_the_network(first: Fitted) -> None:
    copies = random_part(12, 3).x  # one copy of each training slice
    with_copies = fit(CONFIG, TRAIN, VAL, progress=False, copies=copies)
    again = fit(CONFIG, TRAIN, VAL, progress=False, copies=copies)

    for a, b in zip(weights(with_copies), weights(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b) for a, b in zip(weights(first), weights(with_copies), strict=True)
    )
