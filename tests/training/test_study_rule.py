"""Study rules: each statistic decides as documented, the cuts are fitted on validation
studies (every malignant study kept), and a rule survives the trip through model metadata."""

from __future__ import annotations

import numpy as np
import pytest

from lung_model.training.study_rule import (
    BENIGN,
    MALIGNANT,
    NORMAL,
    StudyRule,
    decide_studies,
    fit_study_rule,
)


def slices(*p_malignant: float, p_benign: float = 0.1) -> np.ndarray:
    rows = [[max(0.0, 1 - p - p_benign), p_benign, p] for p in p_malignant]
    return np.array(rows)


def test_any_makes_a_study_malignant_from_one_slice() -> None:
    rule = StudyRule()
    assert rule.decide(slices(0.05, 0.05, 0.3), slice_threshold=0.2) == MALIGNANT
    assert rule.decide(slices(0.05, 0.05, 0.1), slice_threshold=0.2) == NORMAL


@pytest.mark.parametrize(
    ("statistic", "cut", "expected"),
    [
        ("share", 0.5, NORMAL),
        ("share", 0.3, MALIGNANT),
        ("max", 0.9, NORMAL),
        ("top3", 0.25, MALIGNANT),
    ],
)
def test_each_statistic_decides_by_its_cut(statistic: str, cut: float, expected: int) -> None:
    probabilities = slices(0.8, 0.0, 0.0)  # one strong slice in three
    assert StudyRule(statistic, cut).decide(probabilities, slice_threshold=0.5) == expected


def test_benign_from_the_mean_benign_share() -> None:
    rule = StudyRule(benign_cut=0.4)
    assert rule.decide(slices(0.0, 0.0, p_benign=0.5), 0.5) == BENIGN
    assert rule.decide(slices(0.0, 0.0, p_benign=0.2), 0.5) == NORMAL


def test_fitted_cut_keeps_every_malignant_validation_study() -> None:
    probabilities = np.vstack([slices(0.9, 0.7, 0.6), slices(0.5, 0.4, 0.4), slices(0.3, 0.1, 0.0)])
    labels = np.array([MALIGNANT] * 6 + [NORMAL] * 3)
    groups = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    rule = fit_study_rule("top3", labels, probabilities, groups, slice_threshold=0.5)
    assert rule.malignant_cut == pytest.approx((0.4333333 + 0.1333333) / 2, abs=1e-6)
    decided = decide_studies(rule, probabilities, groups, 0.5)
    assert decided.tolist() == [MALIGNANT, MALIGNANT, NORMAL]


def test_a_rule_round_trips_and_unknown_statistics_are_refused() -> None:
    rule = StudyRule("share", 0.25, 0.6)
    assert StudyRule.from_dict(rule.to_dict()) == rule
    assert StudyRule.from_dict(None) == StudyRule()  # models logged before study rules
    with pytest.raises(ValueError, match="unknown study statistic"):
        StudyRule("median")
    assert "3 most malignant slices" in StudyRule("top3", 0.4).describe(0.2)
