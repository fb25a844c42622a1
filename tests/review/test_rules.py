"""The rule behind every verdict in one line; probabilities in one order (issue 13, item 4)."""

from __future__ import annotations

from lung_model.review.rules import VerdictRule, probabilities_line, rule_for, share
from lung_model.settings import Settings


def test_probabilities_are_always_normal_benign_malignant() -> None:
    shares = {"malignant": 0.207, "normal": 0.619, "benign": 0.174}
    assert probabilities_line(shares) == "normal 61.9% · benign 17.4% · malignant 20.7%"


def test_the_rule_names_the_fitted_threshold() -> None:
    rule = VerdictRule(slice_threshold=0.2, study_threshold=0.2)
    assert rule.slice_line().startswith("Slice verdict: malignant from 20%: recall first")
    assert "malignant when any slice reaches 20%" in rule.study_line()
    assert VerdictRule(None, 0.5).slice_line() == "Slice verdict: the most probable class."
    assert share(0.173) == "17.3%"


def test_the_site_threshold_overrides_the_models_for_studies_only() -> None:
    def at(threshold: float | None) -> Settings:
        return Settings().model_copy(update={"malignant_threshold": threshold})

    assert rule_for(at(0.35), 0.2) == VerdictRule(0.2, 0.35)
    assert rule_for(at(None), 0.2) == VerdictRule(0.2, 0.2)
    assert rule_for(at(None), None) == VerdictRule(None, 0.5)
