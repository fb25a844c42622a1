"""Screening features by their reproducibility under another acquisition: the ICC itself,
the pairing of copies with their slices, and a feature model whose trees read only the
stable features while it takes, scores and explains full feature vectors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lung_model.imaging.features import feature_names
from lung_model.settings import CLASSES
from lung_model.training.feature_model import FeatureModelConfig, fit_feature_model
from lung_model.training.fit import Part
from lung_model.training.stability import acquisition_icc, icc, stable_columns

RNG = np.random.default_rng(0)


def test_icc_is_one_for_a_reproducible_feature_and_near_zero_for_pure_noise() -> None:
    slices = RNG.normal(size=(200, 1, 1))
    values = np.concatenate(
        [
            np.repeat(slices, 3, axis=1),  # the same value under every acquisition
            slices + RNG.normal(scale=0.3, size=(200, 3, 1)),  # mostly the slice's
            RNG.normal(size=(200, 3, 1)),  # only the acquisition's
            np.ones((200, 3, 1)),  # constant
        ],
        axis=2,
    )
    reproducible, mostly, noise, constant = icc(values)
    assert reproducible == pytest.approx(1.0)
    assert 0.8 < mostly < 0.99  # 1 / (1 + 0.3**2) = 0.92 expected
    assert abs(noise) < 0.15
    assert constant == 1.0


def _parts(n: int = 120, copies: int = 2) -> tuple[Part, Part]:
    """Slices whose feature 0 tells the class and keeps its value in each copy, whose
    feature 1 tells the class as exported but is replaced by the copy's acquisition, and
    whose other features are noise, as wide as the default's feature vector."""
    y = np.arange(n) % len(CLASSES)
    x = RNG.normal(size=(n, len(feature_names(FeatureModelConfig().features))))
    x[:, 0] = y + RNG.normal(scale=0.3, size=n)
    x[:, 1] = y
    paths = [f"slice{i}.jpg" for i in range(n)]
    original = Part(x.astype(np.float32), y, np.arange(n) // 2, paths)
    again = RNG.normal(size=(n * copies, x.shape[1]))  # the acquisition, not the slice
    again[:, 0] = np.repeat(x[:, 0], copies)
    return original, Part(
        again.astype(np.float32),
        np.repeat(y, copies),
        np.repeat(original.groups, copies),
        [p for p in paths for _ in range(copies)],
    )


def test_copies_are_paired_with_their_slices_in_any_order() -> None:
    original, copies = _parts()
    order = RNG.permutation(len(copies.y))
    shuffled = Part(copies.x[order], copies.y[order], copies.groups[order],
                    [copies.paths[i] for i in order])  # fmt: skip
    np.testing.assert_allclose(
        acquisition_icc(original, shuffled), acquisition_icc(original, copies)
    )
    assert stable_columns(original, copies, 0.9) == (0,)


def test_a_stable_model_reads_only_the_stable_features_of_full_vectors() -> None:
    original, copies = _parts()
    half = len(original.y) // 2
    train = Part(
        original.x[:half], original.y[:half], original.groups[:half], original.paths[:half]
    )
    val = Part(original.x[half:], original.y[half:], original.groups[half:], original.paths[half:])
    config = FeatureModelConfig.tiny()
    model = fit_feature_model(replace(config, augment=2, stable_floor=0.9), train, val, copies)
    assert model.columns == (0,)
    assert model.booster.booster_.feature_name() == [model.feature_names[0]]
    shuffled = original.x.copy()
    shuffled[:, 1:] = RNG.normal(size=(len(shuffled), shuffled.shape[1] - 1))  # unread
    np.testing.assert_allclose(model.predict(shuffled), model.predict(original.x))
    contributions = model.contributions(original.x[0])
    assert contributions.shape == (len(model.feature_names) + 1,)
    assert np.all(contributions[1:-1] == 0)
    raw = model.logits(original.x[:1])[0, CLASSES.index("malignant")]
    assert contributions.sum() == pytest.approx(raw, abs=1e-6)
    every = fit_feature_model(config, train, val)
    assert every.columns is None and every.predict(original.x).shape == (len(original.y), 3)
