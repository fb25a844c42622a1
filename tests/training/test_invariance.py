"""The acquisition-invariance check (issue 19): a model that reads the export is caught, one
that reads the content is not; the nuisance-only baseline and the noise-matched AUC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lung_model.imaging.acquisition import PERTURBATIONS, noise_level
from lung_model.imaging.images import read_gray
from lung_model.settings import CLASSES
from lung_model.training import invariance
from lung_model.training.study_rule import StudyRule

SLICES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"
M, B, N = (CLASSES.index(c) for c in ("malignant", "benign", "normal"))
PICKED = [
    ("Normal cases/Normal case (1).jpg", N, "n1"),
    ("Normal cases/Normal case (50).jpg", N, "n2"),
    ("Bengin cases/Bengin case (1).jpg", B, "b1"),
    ("Malignant cases/Malignant case (2).jpg", M, "m1"),
    ("Malignant cases/Malignant case (44).jpg", M, "m2"),
]


@pytest.fixture(scope="module")
def slices() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    grays = [read_gray(SLICES / path).gray for path, _, _ in PICKED]
    return grays, np.array([y for _, y, _ in PICKED]), np.array([g for _, _, g in PICKED])


def by_noise(x: np.ndarray) -> np.ndarray:
    """A 'model' that calls a smooth slice malignant: this release's fingerprint."""
    p_malignant = np.clip((0.006 - x[:, 0]) / 0.004, 0.01, 0.99)
    return np.stack([(1 - p_malignant) / 2, (1 - p_malignant) / 2, p_malignant], axis=1)


def test_a_model_reading_the_export_is_caught(slices) -> None:
    grays, labels, groups = slices

    def prepare(gray: np.ndarray) -> np.ndarray:
        return np.array([noise_level(gray)])

    result = invariance.check(
        grays, labels, groups, prepare, by_noise, 0.5, StudyRule(), seen=lambda g: g
    )
    assert set(result["perturbations"]) == set(PERTURBATIONS)
    assert result["auc_malignant"] == 1.0  # on this release's slices it looks perfect
    smoothed = result["perturbations"]["smoothed"]
    assert smoothed["normal_as_malignant"] == 1.0 and smoothed["calls_changed"] >= 0.6
    assert smoothed["study_normal_as_malignant"] == 1.0
    assert result["worst"]["worst_calls_changed"] >= 0.6
    assert np.isnan(result["nuisance_auc_malignant"])  # no training measurements given
    flat = invariance.flatten(result, "test")
    assert flat["test_invariance_smoothed_normal_as_malignant"] == 1.0
    assert flat["test_invariance_worst_normal_as_malignant"] == 1.0


def test_the_unchanged_slices_probabilities_given_are_used_as_computed(slices) -> None:
    """The training job passes the test split's probabilities it has: the same result as
    preparing the slices again, and the given ones are the ones compared against."""
    grays, labels, groups = slices

    def prepare(gray: np.ndarray) -> np.ndarray:
        return np.array([noise_level(gray)])

    args = (grays, labels, groups, prepare, by_noise, 0.5, StudyRule(), lambda g: g)
    base = by_noise(np.stack([prepare(g) for g in grays]))
    given, computed = invariance.check(*args, base=base), invariance.check(*args)
    assert invariance.flatten(given, "t") == invariance.flatten(computed, "t")  # NaN left out
    flipped = invariance.check(*args, base=base[:, ::-1])
    assert flipped["auc_malignant"] == 0.0  # computed from `base`, not prepared again


def test_a_model_reading_the_content_is_not(slices) -> None:
    grays, labels, groups = slices
    calls = []

    def prepare(gray: np.ndarray) -> np.ndarray:  # the content: which slice it is (in order)
        calls.append(gray)
        return np.array([float(len(calls) - 1)])

    def oracle(x: np.ndarray) -> np.ndarray:
        rows = [labels[int(i) % len(labels)] for i in x[:, 0]]
        return np.eye(3)[rows] * 0.9 + 0.1 / 3

    per = invariance.perturbation_scores(
        grays, labels, groups, prepare, oracle, 0.5, StudyRule(), oracle(np.arange(5.0)[:, None])
    )
    for name, figures in per.items():
        assert figures["calls_changed"] == 0.0, name
        assert figures["recall_malignant"] == 1.0 and figures["normal_as_malignant"] == 0.0


def test_nuisance_baseline_and_noise_matched_auc() -> None:
    rng = np.random.default_rng(0)
    y = np.array([M] * 40 + [N] * 40)
    fingerprint = np.where(y == M, 0.003, 0.007)[:, None] + rng.normal(0, 0.0005, (80, 1))
    flat = np.full((80, 1), 0.01) + rng.normal(0, 0.0005, (80, 1))
    assert invariance.nuisance_auc(fingerprint[::2], y[::2], fingerprint[1::2], y[1::2]) > 0.95
    assert invariance.nuisance_auc(flat[::2], y[::2], flat[1::2], y[1::2]) < 0.75
    assert np.isnan(invariance.nuisance_auc(flat, np.full(80, N), flat, y))

    groups = np.repeat(np.arange(8), 10)  # 4 malignant, 4 normal patients of 10 slices
    noise = np.repeat([0.002, 0.003, 0.004, 0.005, 0.0035, 0.0045, 0.007, 0.008], 10)
    p = np.where(y == M, 0.9, 0.1)
    matched = invariance.noise_matched_auc(y, p, groups, noise)
    # the overlap is 0.0035..0.005: malignant patients 2 and 3, normal patients 4 and 5
    assert matched == {"auc": 1.0, "malignant_patients": 2.0, "other_patients": 2.0}


def test_the_export_baseline_reads_the_slices_matrix_not_the_crops_shape() -> None:
    """A lung-field crop's rows are the lung field's shape: when they alone tell the class,
    the baseline on the crop's five measurements sees it and the export's does not."""
    rng = np.random.default_rng(0)
    y = np.array([M] * 40 + [N] * 40)
    seen = np.tile([0.01, 1.5, 0.5, 0.0, 192.0], (80, 1)) + rng.normal(0, 1e-4, (80, 5))
    seen[:, 3] = np.where(y == M, 145, 125) + rng.normal(0, 3, 80)  # the crop's rows
    raw = np.tile([0.005, 1.4, 0.5, 512.0, 512.0], (80, 1))
    export = invariance.export_table(raw, seen)
    assert (export[:, 3:] == 512.0).all() and (export[:, :3] == seen[:, :3]).all()
    assert invariance.nuisance_auc(seen[::2], y[::2], seen[1::2], y[1::2]) > 0.95
    assert invariance.nuisance_auc(export[::2], y[::2], export[1::2], y[1::2]) < 0.75


def test_every_baseline_is_reported_from_the_training_measurements(slices) -> None:
    from lung_model.imaging.acquisition import coarse_noise_level, measure, measurement_table

    grays, labels, groups = slices
    table = measurement_table([measure(g) for g in grays])
    coarse = np.array([coarse_noise_level(g) for g in grays])
    reference = invariance.NuisanceReference(seen=table, raw=table, labels=labels, coarse=coarse)
    result = invariance.check(
        grays, labels, groups, lambda g: np.array([noise_level(g)]), by_noise, 0.5,
        StudyRule(), seen=lambda g: g, reference=reference,
    )  # fmt: skip
    # the model reads the slice as exported: both baselines read the same five measurements
    assert result["nuisance_auc_malignant"] == result["nuisance_export_auc_malignant"]
    assert not np.isnan(result["nuisance_export_auc_malignant"])
    assert not np.isnan(result["nuisance_coarse_auc_malignant"])
    flat = invariance.flatten(result, "test")
    assert {"test_nuisance_export_auc_malignant", "test_nuisance_coarse_auc_malignant"} <= set(flat)
