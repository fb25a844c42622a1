"""The gate's decision for a first model, a better, a worse and an equal one, against every
bound: malignant recall on slices and studies, normal slices and studies called malignant,
macro-F1, calibration, and calls changed and normal slices called malignant under another
acquisition."""

from __future__ import annotations

import pytest

from lung_model.lifecycle.gate import GATED, Floors, decide

FLOORS = Floors(
    min_malignant_recall=0.95,
    min_macro_f1=0.55,
    max_ece=0.10,
    tolerance=0.01,
    min_study_malignant_recall=1.0,
    max_normal_as_malignant=0.15,
    max_study_normal_as_malignant=0.20,
    max_invariance_calls_changed=0.05,
    max_invariance_normal_as_malignant=0.15,
)
CHAMPION = {
    "recall_malignant": 0.97,
    "study_recall_malignant": 1.0,
    "normal_as_malignant": 0.05,
    "study_normal_as_malignant": 0.0,
    "macro_f1": 0.65,
    "ece": 0.05,
    "invariance_calls_changed": 0.02,
    "invariance_normal_as_malignant": 0.04,
}


def test_every_gated_metric_has_a_bound() -> None:
    assert set(FLOORS.bounds()) == set(GATED) == set(CHAMPION)


def test_first_model_is_promoted_when_it_clears_the_floors() -> None:
    verdict = decide(CHAMPION, None, FLOORS)
    assert verdict.promote and "first model" in verdict.reason


@pytest.mark.parametrize(
    ("metric", "value", "words"),
    [
        ("recall_malignant", 0.90, "malignant recall (slices) 0.900 < floor"),
        ("study_recall_malignant", 5 / 6, "malignant recall (studies) 0.833 < floor"),
        ("normal_as_malignant", 0.31, "normal slices called malignant 0.310 > ceiling"),
        ("study_normal_as_malignant", 3 / 7, "normal studies called malignant 0.429 > ceiling"),
        ("macro_f1", 0.5, "macro-F1 0.500 < floor"),
        ("ece", 0.2, "ECE 0.200 > ceiling"),
        (
            "invariance_calls_changed",
            0.37,
            "slice calls changed by another acquisition (worst) 0.370 > ceiling 0.050",
        ),
        (
            "invariance_normal_as_malignant",
            0.73,  # issue 19: a smoothed normal scan called malignant
            "normal slices called malignant, another acquisition (worst) 0.730 > ceiling",
        ),
    ],
)
def test_a_bound_rejects_even_without_a_champion(metric: str, value: float, words: str) -> None:
    verdict = decide({**CHAMPION, metric: value}, None, FLOORS)
    assert not verdict.promote and words in verdict.reason


def test_better_model_is_promoted() -> None:
    better = {**CHAMPION, "recall_malignant": 0.99, "macro_f1": 0.70, "normal_as_malignant": 0.01}
    assert decide(better, CHAMPION, FLOORS).promote


def test_equal_model_is_promoted() -> None:
    assert decide(dict(CHAMPION), CHAMPION, FLOORS).promote


def test_slightly_worse_within_tolerance_is_promoted() -> None:
    assert decide({**CHAMPION, "macro_f1": 0.645, "ece": 0.055}, CHAMPION, FLOORS).promote


@pytest.mark.parametrize(
    ("metric", "value", "words"),
    [
        ("recall_malignant", 0.955, "malignant recall (slices)"),
        ("normal_as_malignant", 0.07, "normal slices called malignant"),
        ("macro_f1", 0.63, "macro-F1"),
        ("ece", 0.07, "ECE"),
        ("invariance_calls_changed", 0.04, "slice calls changed by another acquisition"),
    ],
)
def test_worse_model_is_rejected(metric: str, value: float, words: str) -> None:
    verdict = decide({**CHAMPION, metric: value}, CHAMPION, FLOORS)
    assert not verdict.promote
    assert "worse than the champion" in verdict.reason and words in verdict.reason
