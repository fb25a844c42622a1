"""What a preliminary report warns of: the same cautions as the Study page, so a result seen
in the PACS or the EHR carries them too."""

from __future__ import annotations

from datetime import datetime

from lung_model.exchange.reports import GATE_NOT_PASSED, cautions
from lung_model.review.standing import Standing

CLEARED = Standing("2", True, "promoted", datetime(2026, 12, 1), "gate", None, None)
OVERRIDDEN = Standing(
    "1", False, "override", datetime(2026, 12, 4), "make-demo", "demo", "ECE 0.106 > 0.100"
)
OUTSIDE = [
    {
        "measurement": "noise",
        "side": "below",
        "value": 0.0007,
        "low": 0.00145,
        "high": 0.108,
        "n_outside": 8,
        "n_slices": 8,
    }
]
SENSITIVE = {
    "perturbations": ["narrower_window", "smaller_matrix"],
    "n_slices": 6,
    "changed": {"a.dcm": ["narrower_window"], "b.dcm": ["narrower_window", "smaller_matrix"]},
}


def test_a_cleared_model_on_a_familiar_steady_scan_gives_no_caution() -> None:
    steady = {**SENSITIVE, "changed": {}}
    assert cautions(CLEARED, False, [], steady) == []
    assert cautions(CLEARED, False, None, None) == []


def test_each_warning_of_the_study_page_becomes_a_caution_in_words() -> None:
    found = cautions(OVERRIDDEN, True, OUTSIDE, SENSITIVE)
    assert [c.code for c in found] == [
        GATE_NOT_PASSED,
        "unlike-training",
        "export-sensitive",
        "uncertain",
    ]
    gate, unlike, export, _ = found
    assert "promoted by operator override on 2026-12-04" in gate.words
    assert gate.words.endswith("Not for clinical use.")
    assert "pixel noise 0.0007, 52% below the lowest" in unlike.words
    assert "on 2 of 6 slices (narrower window 2, smaller matrix 1)" in export.words
    assert all(len(c.meaning) <= 64 for c in found)  # the SR's code meaning
