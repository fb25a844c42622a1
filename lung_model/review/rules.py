"""The rule behind every verdict the dashboard shows, in one short line, and probabilities
always in the same order (normal, benign, malignant: `settings.CLASSES`).

A slice is malignant from the malignant threshold fitted with its model
(`lung_model.scoring.predictor.slice_class`), otherwise the likelier of normal and benign;
a study follows the study rule shipped with its model (`training.study_rule.StudyRule`,
`scoring.study.study_verdict`) at the slice threshold the site's `LUNG_MALIGNANT_THRESHOLD`
sets, else the model's (`scoring.predictor.study_threshold`); a model logged without a
study rule: malignant as soon as one slice reaches that threshold, otherwise the likelier of
normal and benign on average. Both are in the model's MLflow metadata
(`malignant_threshold`, `study_rule`).
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.models.html#mlflow.models.get_model_info
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lung_model.settings import CLASSES, Settings
from lung_model.training.study_rule import StudyRule


def share(value: float) -> str:
    """0.2 -> '20%', 0.173 -> '17.3%'."""
    return f"{100 * value:.1f}".removesuffix(".0") + "%"


def probabilities_line(probabilities: Mapping[str, float | None]) -> str:
    """'normal 61.9% · benign 17.4% · malignant 20.7%', always in CLASSES order."""
    return " · ".join(
        f"{name} {100 * value:.1f}%"
        for name in CLASSES
        if (value := probabilities.get(name)) is not None
    )


@dataclass(frozen=True)
class VerdictRule:
    slice_threshold: float | None  # the model's own; None: the most probable class
    study_threshold: float  # the slice threshold the study rule counts with
    study_rule: StudyRule = field(default_factory=StudyRule)  # default: the "any slice" rule

    def slice_line(self) -> str:
        if self.slice_threshold is None:
            return "Slice verdict: the most probable class."
        return (
            f"Slice verdict: malignant from {share(self.slice_threshold)}: recall first; "
            "otherwise the likelier of normal and benign."
        )

    def study_line(self) -> str:
        """The model's own study rule (`StudyRule.describe`) at the study threshold."""
        return f"Study verdict: {self.study_rule.describe(self.study_threshold)}."


def rule_for(
    settings: Settings, model_threshold: float | None, study_rule: StudyRule | None = None
) -> VerdictRule:
    """The rule of a model with this fitted threshold and study rule at this site."""
    study = settings.malignant_threshold
    if study is None:
        study = 0.5 if model_threshold is None else model_threshold
    return VerdictRule(model_threshold, study, study_rule or StudyRule())


@dataclass(frozen=True)
class LoggedRules:
    """The decision rules logged with a registered version."""

    malignant_threshold: float | None  # None: arg-max
    study_rule: StudyRule  # the "any slice" rule for a model logged without one


def logged_rules(settings: Settings, model_name: str, version: str) -> LoggedRules:
    """The malignant threshold and study rule in a registered version's metadata.
    Raises when the registry cannot be read."""
    import mlflow

    from lung_model.platform.tracking import configure_mlflow

    configure_mlflow(settings)
    info = mlflow.models.get_model_info(f"models:/{model_name}/{version}")
    metadata = info.metadata or {}
    value = metadata.get("malignant_threshold")
    return LoggedRules(
        None if value is None else float(value), StudyRule.from_dict(metadata.get("study_rule"))
    )
