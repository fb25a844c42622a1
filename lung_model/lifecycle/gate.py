"""The promotion gate as a pure decision: floors first, then no worse than the champion.

A challenger is promoted when, on the same fixed test split, it clears every absolute bound
(`LUNG_GATE_*` settings: malignant recall on slices and on studies, the share of normal
slices and of normal studies called malignant, macro-F1, expected calibration error, and
under the acquisition-invariance check's perturbations the share of slice calls that change
and of normal slices called malignant, each at its worst) and no
gated metric is worse than the champion's by more than the tolerance. Equal is good enough.
The thresholds are code and settings, reviewed like code; `lung_model.lifecycle.promotion` applies the
decision to the registry and the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from lung_model.settings import Settings
from lung_model.training.metrics import LOWER_IS_BETTER

# what each bound is called in a decision's reason
LABELS = {
    "recall_malignant": "malignant recall (slices)",
    "study_recall_malignant": "malignant recall (studies)",
    "normal_as_malignant": "normal slices called malignant",
    "study_normal_as_malignant": "normal studies called malignant",
    "macro_f1": "macro-F1",
    "ece": "ECE",
    "invariance_calls_changed": "slice calls changed by another acquisition (worst)",
    "invariance_normal_as_malignant": "normal slices called malignant, another acquisition (worst)",
}
GATED = tuple(LABELS)  # each has a floor (or ceiling) and is compared with the champion's


@dataclass(frozen=True)
class Floors:
    """Bounds on the headline test metrics (`LUNG_GATE_*`; the README says why each)."""

    min_malignant_recall: float
    min_macro_f1: float
    max_ece: float
    tolerance: float
    min_study_malignant_recall: float = 0.0
    max_normal_as_malignant: float = 1.0
    max_study_normal_as_malignant: float = 1.0
    # the acquisition-invariance check (`lung_model.training.invariance`): the worst case
    # over the perturbations another scanner, kernel or export would make
    max_invariance_calls_changed: float = 1.0
    max_invariance_normal_as_malignant: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Floors:
        return cls(
            min_malignant_recall=settings.gate_min_malignant_recall,
            min_macro_f1=settings.gate_min_macro_f1,
            max_ece=settings.gate_max_ece,
            tolerance=settings.gate_tolerance,
            min_study_malignant_recall=settings.gate_min_study_malignant_recall,
            max_normal_as_malignant=settings.gate_max_normal_as_malignant,
            max_study_normal_as_malignant=settings.gate_max_study_normal_as_malignant,
            max_invariance_calls_changed=settings.gate_max_invariance_calls_changed,
            max_invariance_normal_as_malignant=settings.gate_max_invariance_normal_as_malignant,
        )

    def bounds(self) -> dict[str, float]:
        return {
            "recall_malignant": self.min_malignant_recall,
            "study_recall_malignant": self.min_study_malignant_recall,
            "normal_as_malignant": self.max_normal_as_malignant,
            "study_normal_as_malignant": self.max_study_normal_as_malignant,
            "macro_f1": self.min_macro_f1,
            "ece": self.max_ece,
            "invariance_calls_changed": self.max_invariance_calls_changed,
            "invariance_normal_as_malignant": self.max_invariance_normal_as_malignant,
        }


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def decide(
    candidate: dict[str, float], champion: dict[str, float] | None, floors: Floors
) -> Verdict:
    """Promote or reject `candidate` (test metrics) against the floors and the champion's."""
    failures = []
    for name, bound in floors.bounds().items():
        ceiling = name in LOWER_IS_BETTER
        if (candidate[name] > bound) if ceiling else (candidate[name] < bound):
            word = "ceiling" if ceiling else "floor"
            sign = ">" if ceiling else "<"
            failures.append(f"{LABELS[name]} {candidate[name]:.3f} {sign} {word} {bound:.3f}")
    if failures:
        return Verdict(False, "below floor: " + "; ".join(failures))
    if champion is None:
        return Verdict(True, "first model: clears every floor and there is no champion")
    worse = []
    for name in GATED:
        change = candidate[name] - champion[name]
        if (change > floors.tolerance) if name in LOWER_IS_BETTER else (change < -floors.tolerance):
            worse.append(f"{LABELS[name]} {candidate[name]:.3f} vs champion {champion[name]:.3f}")
    if worse:
        return Verdict(
            False,
            f"worse than the champion beyond tolerance {floors.tolerance}: " + "; ".join(worse),
        )
    summary = ", ".join(f"{n} {candidate[n]:.3f} vs {champion[n]:.3f}" for n in GATED)
    return Verdict(True, f"clears every floor and is no worse than the champion ({summary})")
