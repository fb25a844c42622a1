"""Gate decisions in sentences and tables, not tag lists (issue 13, item 3)."""

from __future__ import annotations

from datetime import datetime

from lung_model.lifecycle.gate import Floors
from lung_model.review.model_card import decision_sentence, metrics_table
from lung_model.settings import Settings

FLOORS = Floors(min_malignant_recall=0.95, min_macro_f1=0.7, max_ece=0.1, tolerance=0.01)


def rejected() -> dict:
    return {
        "created_at": datetime(2025, 3, 1, 9, 30),
        "decision": "rejected",
        "candidate_version": "3",
        "champion_version": "2",
        "actor": "gate",
        "reason": "below floor: malignant recall 0.900 < floor 0.950",
        "candidate_metrics": {"ece": 0.05, "recall_malignant": 0.9, "macro_f1": 0.8},
        "champion_metrics": {"ece": 0.04, "recall_malignant": 0.97, "macro_f1": 0.78},
    }


def test_a_rejection_reads_as_a_sentence() -> None:
    assert decision_sentence(rejected()) == (
        "2025-03-01 09:30: the gate rejected version 3; version 2 stayed champion: "
        "below floor: malignant recall 0.900 < floor 0.950."
    )
    override = {**rejected(), "decision": "override", "actor": "make-demo", "reason": "demo"}
    assert "make-demo made version 3 champion by operator override, replacing version 2" in (
        decision_sentence(override)
    )


def test_metrics_side_by_side_with_the_gates_limits_gated_first() -> None:
    rows = metrics_table(rejected(), FLOORS)
    assert [row["metric"] for row in rows] == [
        "malignant recall",
        "macro-F1",
        "calibration error (ECE)",
    ]
    assert rows[0] == {
        "metric": "malignant recall",
        "version 3": 0.9,
        "version 2 (champion then)": 0.97,
        "gate": ">= 0.95",
    }
    assert rows[2]["gate"] == "<= 0.10"


def test_every_bound_of_the_gate_has_its_limit_and_a_plain_name() -> None:
    event = rejected()
    event["candidate_metrics"] |= {
        "study_recall_malignant": 1.0,
        "normal_as_malignant": 0.16,
        "study_normal_as_malignant": 0.43,
    }
    floors = Floors.from_settings(Settings())
    rows = {row["metric"]: row["gate"] for row in metrics_table(event, floors)}
    assert rows["malignant recall (studies)"] == f">= {floors.min_study_malignant_recall:.2f}"
    assert rows["normal slices called malignant"] == f"<= {floors.max_normal_as_malignant:.2f}"
    assert rows["normal studies called malignant"] == (
        f"<= {floors.max_study_normal_as_malignant:.2f}"
    )


def test_the_invariance_check_is_shown_beside_the_accuracy() -> None:
    from lung_model.review.model_card import invariance_rows, invariance_sentence

    assert invariance_rows({"test_macro_f1": 0.6}) == []
    assert invariance_sentence({"test_macro_f1": 0.6}, FLOORS) is None
    metrics = {
        "test_invariance_smoothed_calls_changed": 0.37,
        "test_invariance_smoothed_normal_as_malignant": 0.73,
        "test_invariance_jpeg_calls_changed": 0.01,
        "test_invariance_worst_calls_changed": 0.37,
        "test_invariance_worst_normal_as_malignant": 0.73,
        "test_roc_auc_malignant": 1.0,
        "test_nuisance_auc_malignant": 0.99,
        "test_nuisance_export_auc_malignant": 0.62,
        "test_nuisance_coarse_auc_malignant": 0.91,
    }
    rows = invariance_rows(metrics)
    assert [r["acquisition"] for r in rows] == ["smoothed", "jpeg"]
    assert rows[0]["calls changed"] == 0.37 and rows[0]["normal slices → malignant"] == 0.73
    assert rows[1]["normal slices → malignant"] is None
    sentence = invariance_sentence(metrics, Floors.from_settings(Settings()))
    assert sentence is not None
    assert "at most 37% of its test-slice calls change (gate: 5%)" in sentence
    assert "73% of normal slices are called malignant (gate: 15%)" in sentence
    assert "the acquisition measurements alone reach 0.990" in sentence
    assert "the slice's matrix) reach 0.620" in sentence
    assert "fine anatomy counts there too): 0.910." in sentence
    event = rejected()
    event["candidate_metrics"] |= {"invariance_calls_changed": 0.37}
    rows = {
        row["metric"]: row["gate"] for row in metrics_table(event, Floors.from_settings(Settings()))
    }
    assert rows["calls changed by another acquisition (worst)"] == "<= 0.05"
