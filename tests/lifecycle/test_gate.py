"""The gate's decision for a first model, a better, a worse and an equal one."""

from __future__ import annotations

import pytest

from lung_model.lifecycle.gate import Floors, decide

FLOORS = Floors(min_malignant_recall=0.95, min_macro_f1=0.70, max_ece=0.10, tolerance=0.01)
CHAMPION = {"recall_malignant": 0.97, "macro_f1": 0.80, "ece": 0.05}


def test_first_model_is_promoted_when_it_clears_the_floors() -> None:
    verdict = decide(CHAMPION, None, FLOORS)
    assert verdict.promote and "first model" in verdict.reason


@pytest.mark.parametrize(
    ("metric", "value", "words"),
    [
        ("recall_malignant", 0.90, "malignant recall"),
        ("macro_f1", 0.5, "macro-F1"),
        ("ece", 0.2, "ECE"),
    ],
)
def test_a_floor_rejects_even_without_a_champion(metric: str, value: float, words: str) -> None:
    verdict = decide({**CHAMPION, metric: value}, None, FLOORS)
    assert not verdict.promote and words in verdict.reason and "floor" in verdict.reason


def test_better_model_is_promoted() -> None:
    better = {"recall_malignant": 0.99, "macro_f1": 0.85, "ece": 0.04}
    assert decide(better, CHAMPION, FLOORS).promote


def test_equal_model_is_promoted() -> None:
    assert decide(dict(CHAMPION), CHAMPION, FLOORS).promote


def test_slightly_worse_within_tolerance_is_promoted() -> None:
    assert decide({**CHAMPION, "macro_f1": 0.795, "ece": 0.055}, CHAMPION, FLOORS).promote


@pytest.mark.parametrize(
    ("metric", "value"), [("recall_malignant", 0.955), ("macro_f1", 0.78), ("ece", 0.07)]
)
def test_worse_model_is_rejected(metric: str, value: float) -> None:
    verdict = decide({**CHAMPION, metric: value}, CHAMPION, FLOORS)
    assert not verdict.promote
    assert "worse than the champion" in verdict.reason and metric in verdict.reason
