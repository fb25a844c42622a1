"""The verdict on one study from its slices' probabilities, and when a person must look.

Sensitivity first: a study is malignant as soon as one slice is over the malignant
threshold; otherwise it takes the class with the higher mean probability among normal
and benign. It is flagged for review when the probability behind that verdict (the
highest malignant probability, or the mean of the chosen class) is below the margin.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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


def study_verdict(stats: SliceStats, uncertain_margin: float) -> StudyVerdict:
    if stats.n_malignant_slices > 0:
        label, confidence = "malignant", stats.max_p_malignant
    elif stats.mean_p_benign > stats.mean_p_normal:
        label, confidence = "benign", stats.mean_p_benign
    else:
        label, confidence = "normal", stats.mean_p_normal
    return StudyVerdict(label, confidence, needs_review=confidence < uncertain_margin)
