"""The promotion gate as a pure decision: floors first, then no worse than the champion.

A challenger is promoted when, on the same fixed test split, it clears every absolute floor
(malignant recall, macro-F1, expected calibration error; `LUNG_GATE_*` settings) and no
gated metric is worse than the champion's by more than the tolerance. Equal is good enough.
The thresholds are code and settings, reviewed like code; `lung_model.lifecycle.promotion` applies the
decision to the registry and the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from lung_model.settings import Settings
from lung_model.training.metrics import LOWER_IS_BETTER

# the headline metrics with a floor; each is also compared with the champion's
GATED = ("recall_malignant", "macro_f1", "ece")


@dataclass(frozen=True)
class Floors:
    min_malignant_recall: float
    min_macro_f1: float
    max_ece: float
    tolerance: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Floors:
        return cls(
            settings.gate_min_malignant_recall,
            settings.gate_min_macro_f1,
            settings.gate_max_ece,
            settings.gate_tolerance,
        )


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def decide(
    candidate: dict[str, float], champion: dict[str, float] | None, floors: Floors
) -> Verdict:
    """Promote or reject `candidate` (test metrics) against the floors and the champion's."""
    failures = []
    if candidate["recall_malignant"] < floors.min_malignant_recall:
        failures.append(
            f"malignant recall {candidate['recall_malignant']:.3f} < floor {floors.min_malignant_recall:.3f}"
        )
    if candidate["macro_f1"] < floors.min_macro_f1:
        failures.append(f"macro-F1 {candidate['macro_f1']:.3f} < floor {floors.min_macro_f1:.3f}")
    if candidate["ece"] > floors.max_ece:
        failures.append(f"ECE {candidate['ece']:.3f} > ceiling {floors.max_ece:.3f}")
    if failures:
        return Verdict(False, "below floor: " + "; ".join(failures))
    if champion is None:
        return Verdict(True, "first model: clears every floor and there is no champion")
    worse = []
    for name in GATED:
        change = candidate[name] - champion[name]
        if (change > floors.tolerance) if name in LOWER_IS_BETTER else (change < -floors.tolerance):
            worse.append(f"{name} {candidate[name]:.3f} vs champion {champion[name]:.3f}")
    if worse:
        return Verdict(
            False,
            f"worse than the champion beyond tolerance {floors.tolerance}: " + "; ".join(worse),
        )
    summary = ", ".join(f"{n} {candidate[n]:.3f} vs {champion[n]:.3f}" for n in GATED)
    return Verdict(True, f"clears every floor and is no worse than the champion ({summary})")
