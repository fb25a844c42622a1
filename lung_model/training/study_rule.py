"""A study's verdict from its slices' probabilities: the rule is chosen, fitted and shipped
with the model, so evaluation, the gate and serving decide studies alike.

Malignant first: a study is malignant when a statistic of its slices' malignant evidence
reaches a cut. The statistics compared by cross-validation (`bench/bench_model_selection.py
--study-rules`): `any` (one slice at or above the slice threshold: the rule before study
rules were fitted, and the default for models logged without one), `share` (the share of
slices at or above the slice threshold), `max` and `top3` (the highest malignant
probability, and the mean of the three highest). Otherwise the study is benign when the mean
of p_benign / (p_benign + p_normal) over its slices reaches `benign_cut`, else normal.
The cuts are fitted on validation patients (`fit_study_rule`), never on the test split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lung_model.settings import CLASSES

STATISTICS = ("any", "share", "max", "top3")
MALIGNANT, BENIGN, NORMAL = (CLASSES.index(c) for c in ("malignant", "benign", "normal"))


@dataclass(frozen=True)
class StudyRule:
    statistic: str = "any"
    malignant_cut: float = 1e-9  # `any`: one slice is enough
    benign_cut: float = 0.5

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(
                f"unknown study statistic {self.statistic!r} ({', '.join(STATISTICS)})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> StudyRule:
        return cls(**values) if values else cls()

    def malignant_score(self, probabilities: np.ndarray, slice_threshold: float) -> float:
        """The study's malignant evidence under this rule's statistic."""
        p = np.sort(probabilities[:, MALIGNANT])[::-1]
        if len(p) == 0:
            return 0.0
        if self.statistic in ("any", "share"):
            above = float(np.mean(p >= slice_threshold))
            return above if self.statistic == "share" else float(above > 0)
        return float(p[0] if self.statistic == "max" else p[:3].mean())

    def benign_score(self, probabilities: np.ndarray) -> float:
        pair = probabilities[:, BENIGN] + probabilities[:, NORMAL]
        return float(np.mean(probabilities[:, BENIGN] / np.maximum(pair, 1e-12)))

    def decide(self, probabilities: np.ndarray, slice_threshold: float) -> int:
        """The class index of a study whose slices have these (n, 3) probabilities."""
        if self.malignant_score(probabilities, slice_threshold) >= self.malignant_cut:
            return MALIGNANT
        return BENIGN if self.benign_score(probabilities) >= self.benign_cut else NORMAL

    def describe(self, slice_threshold: float) -> str:
        """The rule in one line, for people."""
        malignant = {
            "any": f"one slice at malignant {slice_threshold:.0%} or more",
            "share": f"{self.malignant_cut:.0%} of slices at malignant {slice_threshold:.0%}+",
            "max": f"its most malignant slice at {self.malignant_cut:.0%} or more",
            "top3": f"its 3 most malignant slices at {self.malignant_cut:.0%} on average",
        }[self.statistic]
        return f"malignant when {malignant}; else benign from {self.benign_cut:.0%} benign share"


def studies(groups: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The study names and, for each, the indices of its slices."""
    names, inverse = np.unique(groups, return_inverse=True)
    return names, [np.flatnonzero(inverse == i) for i in range(len(names))]


def study_labels(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each study's label: the majority of its slices' (per-patient) labels."""
    _, members = studies(groups)
    return np.array([np.bincount(labels[m], minlength=len(CLASSES)).argmax() for m in members])


def decide_studies(
    rule: StudyRule, probabilities: np.ndarray, groups: np.ndarray, slice_threshold: float
) -> np.ndarray:
    _, members = studies(groups)
    return np.array([rule.decide(probabilities[m], slice_threshold) for m in members])


def _midpoint_cut(positive: list[float], negative: list[float]) -> float:
    """A cut that keeps every positive study (the lowest positive score), moved halfway
    towards the highest negative below it: sensitivity first, then margin."""
    if not positive:
        return 1.0
    lowest = min(positive)
    below = [s for s in negative if s < lowest]
    return (lowest + max(below)) / 2 if below else lowest


def fit_study_rule(
    statistic: str,
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    slice_threshold: float,
) -> StudyRule:
    """Fit the rule's cuts on validation studies: the malignant cut keeps every malignant
    validation study malignant; the benign cut is the midpoint between the benign and the
    normal validation studies' mean benign share (0.5 when either is missing)."""
    _, members = studies(groups)
    truth = study_labels(labels, groups)
    malignant_cut = StudyRule().malignant_cut
    if statistic != "any":
        probe = StudyRule(statistic)
        scores = [probe.malignant_score(probabilities[m], slice_threshold) for m in members]
        malignant_cut = _midpoint_cut(
            [s for s, t in zip(scores, truth, strict=True) if t == MALIGNANT],
            [s for s, t in zip(scores, truth, strict=True) if t != MALIGNANT],
        )
    share = [StudyRule().benign_score(probabilities[m]) for m in members]
    benign = [s for s, t in zip(share, truth, strict=True) if t == BENIGN]
    normal = [s for s, t in zip(share, truth, strict=True) if t == NORMAL]
    benign_cut = (np.mean(benign) + np.mean(normal)) / 2 if benign and normal else 0.5
    return StudyRule(statistic, float(malignant_cut), float(benign_cut))
