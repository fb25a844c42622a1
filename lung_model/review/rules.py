"""The rule behind every verdict the dashboard shows, in one short line, and probabilities
always in the same order (normal, benign, malignant: `settings.CLASSES`).

A slice is malignant from the malignant threshold fitted with its model
(`lung_model.scoring.predictor.slice_class`), otherwise the likelier of normal and benign;
a study is malignant as soon as one slice reaches the study threshold (the site's
`LUNG_MALIGNANT_THRESHOLD`, else the model's: `scoring.predictor.study_threshold`),
otherwise the likelier of normal and benign on average (`scoring.study.study_verdict`).
The model's threshold is in its MLflow metadata (`malignant_threshold`).
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.models.html#mlflow.models.get_model_info
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lung_model.settings import CLASSES, Settings


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
    study_threshold: float  # where one slice makes its study malignant

    def slice_line(self) -> str:
        if self.slice_threshold is None:
            return "Slice verdict: the most probable class."
        return (
            f"Slice verdict: malignant from {share(self.slice_threshold)}: recall first; "
            "otherwise the likelier of normal and benign."
        )

    def study_line(self) -> str:
        return (
            f"Study verdict: malignant when any slice reaches {share(self.study_threshold)}: "
            "recall first; otherwise the likelier of normal and benign on average."
        )


def rule_for(settings: Settings, model_threshold: float | None) -> VerdictRule:
    """The rule of a model with this fitted threshold at this site."""
    study = settings.malignant_threshold
    if study is None:
        study = 0.5 if model_threshold is None else model_threshold
    return VerdictRule(model_threshold, study)


def fitted_threshold(settings: Settings, model_name: str, version: str) -> float | None:
    """The malignant threshold logged with a registered version (None: arg-max, or unknown).
    Raises when the registry cannot be read."""
    import mlflow

    from lung_model.platform.tracking import configure_mlflow

    configure_mlflow(settings)
    info = mlflow.models.get_model_info(f"models:/{model_name}/{version}")
    value = (info.metadata or {}).get("malignant_threshold")
    return None if value is None else float(value)
