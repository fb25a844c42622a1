"""Metrics, calibration and bootstrap intervals on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from lung_model.training.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from lung_model.training.metrics import (
    bootstrap_intervals,
    evaluate,
    flatten,
    point_metrics,
    study_level,
)


def one_hot(labels: list[int], confidence: float = 0.9) -> np.ndarray:
    probs = np.full((len(labels), 3), (1 - confidence) / 2)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def test_point_metrics_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 2, 0]
    m = point_metrics(labels, one_hot(predicted))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall_malignant"] == pytest.approx(0.5)
    assert m["precision_benign"] == pytest.approx(2 / 3)
    assert m["f1_normal"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert point_metrics(labels, one_hot(labels.tolist()))["roc_auc_macro"] == 1.0


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    labels = np.array([0] * 8 + [1] * 2)
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))  # 80% sure, 80% right
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    assert expected_calibration_error(one_hot([0] * 10, 0.99), labels) == pytest.approx(0.19)


def test_temperature_softens_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    logits = rng.normal(0, 1, (600, 3))
    right = rng.random(600) < 0.7
    logits[right, labels[right]] += 2.0
    logits *= 5  # overconfident
    t = fit_temperature(logits, labels)
    assert 3 < t < 8
    before = expected_calibration_error(apply_temperature(logits, 1.0), labels)
    after = expected_calibration_error(apply_temperature(logits, t), labels)
    assert after < before / 2
    assert (apply_temperature(logits, t).argmax(1) == logits.argmax(1)).all()


def test_group_bootstrap_widens_the_interval_when_errors_cluster_in_groups() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    groups = np.arange(300) // 15  # 20 patients of 15 slices
    wrong_patient = np.isin(groups, [3, 7, 11, 19])  # all of a patient's slices wrong
    probs = one_hot(np.where(wrong_patient, (labels + 1) % 3, labels).tolist())
    clustered = bootstrap_intervals(labels, probs, groups, rounds=400)
    as_if_independent = bootstrap_intervals(labels, probs, np.arange(300), rounds=400)
    accuracy = point_metrics(labels, probs)["accuracy"]
    assert accuracy == pytest.approx(0.8)
    assert clustered["accuracy"][0] < accuracy < clustered["accuracy"][1]
    width = clustered["accuracy"][1] - clustered["accuracy"][0]
    assert width > 2 * (as_if_independent["accuracy"][1] - as_if_independent["accuracy"][0])


def test_study_level_and_flatten() -> None:
    labels = np.array([2, 2, 2, 0, 0])
    groups = np.array(["a", "a", "a", "b", "b"])
    probs = one_hot([2, 2, 0, 0, 0])
    study_labels, study_probs = study_level(labels, probs, groups)
    assert study_labels.tolist() == [2, 0]
    assert study_probs.argmax(1).tolist() == [2, 0]
    result = evaluate(labels, probs, groups, rounds=20)
    flat = flatten(result, "test")
    assert flat["test_study_accuracy"] == 1.0
    assert flat["test_accuracy"] == pytest.approx(0.8)
    assert flat["test_macro_f1_ci_low"] <= flat["test_macro_f1"] <= flat["test_macro_f1_ci_high"]
    assert result["confusion"][2] == [1, 0, 2]


def test_malignant_threshold_rule_and_its_fit() -> None:
    from lung_model.training.calibration import fit_malignant_threshold
    from lung_model.training.metrics import MALIGNANT, classify

    probs = np.array([[0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    np.testing.assert_array_equal(classify(probs), [0, 1, 2, 0])
    np.testing.assert_array_equal(classify(probs, 0.25), [2, 2, 2, 0])  # not benign over normal
    labels = np.array([0, 1, 2, 2, 2, 2])
    scores = np.array([0.9, 0.8, 0.6, 0.45, 0.2, 0.05])
    p = np.stack([1 - scores, np.zeros(6), scores], axis=1)
    assert fit_malignant_threshold(p, labels, 0.75, MALIGNANT) == pytest.approx(0.2)  # 3 of 4
    assert fit_malignant_threshold(p, labels, 1.0, MALIGNANT) == pytest.approx(0.05)
    assert fit_malignant_threshold(p, labels, 0.25, MALIGNANT) == pytest.approx(0.5)  # never above
    with_rule = evaluate(labels, p, np.arange(6).astype(str), rounds=0, malignant_threshold=0.2)
    assert with_rule["slice"]["recall_malignant"] == pytest.approx(0.75)
    assert point_metrics(labels, p)["recall_malignant"] == pytest.approx(0.25)  # arg-max
