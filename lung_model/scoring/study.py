"""The verdict on one study from its slices' probabilities, and when a person must look.

The model's own study rule decides (`lung_model.training.study_rule`, fitted and shipped
with the model; models logged without one: malignant as soon as one slice reaches the
malignant threshold, else the likelier of benign and normal on average). The study is
flagged for review when the evidence behind the verdict (the malignant score of the rule,
or the mean probability of the chosen class) is below the margin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lung_model.settings import CLASSES
from lung_model.training.study_rule import StudyRule


@dataclass(frozen=True)
class SliceStats:
    n_slices: int
    max_p_malignant: float
    mean_p_malignant: float
    mean_p_normal: float
    mean_p_benign: float
    n_malignant_slices: int


@dataclass(frozen=True)
class StudyVerdict:
    predicted_class: str
    confidence: float
    needs_review: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def study_verdict(
    probabilities: np.ndarray, rule: StudyRule, slice_threshold: float, uncertain_margin: float
) -> StudyVerdict:
    """The verdict on a study whose scored slices have these (n, 3) probabilities."""
    label = CLASSES[rule.decide(probabilities, slice_threshold)]
    if label == "malignant":
        confidence = (
            float(probabilities[:, CLASSES.index("malignant")].max())
            if rule.statistic in ("any", "share")
            else rule.malignant_score(probabilities, slice_threshold)
        )
    else:
        confidence = float(probabilities[:, CLASSES.index(label)].mean())
    return StudyVerdict(label, confidence, needs_review=confidence < uncertain_margin)
