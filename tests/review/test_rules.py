"""The rule behind every verdict in one line; probabilities in one order (issue 13, item 4)."""

from __future__ import annotations

from lung_model.review.rules import VerdictRule, probabilities_line, rule_for, share
from lung_model.settings import Settings
from lung_model.training.study_rule import StudyRule


def test_probabilities_are_always_normal_benign_malignant() -> None:
    shares = {"malignant": 0.207, "normal": 0.619, "benign": 0.174}
    assert probabilities_line(shares) == "normal 61.9% · benign 17.4% · malignant 20.7%"


def test_the_rule_names_the_fitted_threshold() -> None:
    rule = VerdictRule(slice_threshold=0.2, study_threshold=0.2)
    assert rule.slice_line().startswith("Slice verdict: malignant from 20%: recall first")
    assert rule.study_line() == (  # a model logged without a study rule: the "any" rule
        "Study verdict: malignant when one slice at malignant 20% or more; "
        "else benign from 50% benign share."
    )
    assert VerdictRule(None, 0.5).slice_line() == "Slice verdict: the most probable class."
    assert share(0.173) == "17.3%"


def test_the_site_threshold_overrides_the_models_for_studies_only() -> None:
    def at(threshold: float | None) -> Settings:
        return Settings().model_copy(update={"malignant_threshold": threshold})

    assert rule_for(at(0.35), 0.2) == VerdictRule(0.2, 0.35, StudyRule())
    assert rule_for(at(None), 0.2) == VerdictRule(0.2, 0.2)
    assert rule_for(at(None), None) == VerdictRule(None, 0.5)


def test_the_study_line_describes_the_models_own_study_rule() -> None:
    """A study rule shipped with the model (its metadata's `study_rule`), at the study
    threshold: the line says what scoring decides with (`StudyRule.decide`)."""
    top3 = StudyRule("top3", malignant_cut=0.4, benign_cut=0.3)
    rule = rule_for(Settings().model_copy(update={"malignant_threshold": None}), 0.2, top3)
    assert rule.study_line() == f"Study verdict: {top3.describe(0.2)}."
    assert "its 3 most malignant slices at 40% on average" in rule.study_line()
    assert "benign from 30% benign share" in rule.study_line()
    shared = StudyRule("share", malignant_cut=0.25)
    site = Settings().model_copy(update={"malignant_threshold": 0.35})
    assert "25% of slices at malignant 35%+" in rule_for(site, 0.2, shared).study_line()
