"""The worklist follows new results and reviews (triggers), filters and pages in SQL."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from dashboard_helpers import MODEL
from sqlalchemy import text

from lung_model.platform import db
from lung_model.review.database import dashboard_engine
from lung_model.review.reviews import add_review
from lung_model.review.worklist import WorklistFilter, worklist


def _row(engine, batch_id: int) -> dict:
    rows = worklist(engine, WorklistFilter(study=str(batch_id))).rows
    assert len(rows) == 1
    return rows[0]


def test_a_newer_model_result_and_a_later_review_supersede(seeded) -> None:
    engine = dashboard_engine(seeded.settings)
    assert _row(engine, seeded.high)["model_version"] == "1"
    with db.get_engine(seeded.settings).begin() as owner:  # the scorer, with model version 2
        owner.execute(
            text(
                "INSERT INTO study_results (batch_id, model_name, model_version, data_version,"
                " n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices,"
                " predicted_class, needs_review, created_at) VALUES (:b, :m, '2', 'data-v2', 3,"
                " 0.30, 0.2, 0, 'benign', true, now() + interval '1 minute')"
            ),
            {"b": seeded.high, "m": MODEL},
        )
    row = _row(engine, seeded.high)
    assert (row["model_version"], row["predicted_class"], row["max_p_malignant"]) == (
        "2",
        "benign",
        0.30,
    )
    common = {"batch_id": seeded.high, "reviewer": "alice", "model_name": MODEL}
    add_review(engine, **common, label="malignant", predicted_class="benign", model_version="2")
    row = _row(engine, seeded.high)
    assert (row["decision"], row["reviewed_label"]) == ("correct", "malignant")
    assert seeded.high in _batches(engine, "disagreement")
    add_review(engine, **common, label="benign", predicted_class="benign", model_version="2")
    row = _row(engine, seeded.high)
    assert (row["decision"], row["reviewed_label"]) == ("confirm", "benign")
    assert seeded.high not in _batches(engine, "disagreement")
    assert seeded.high in _batches(engine, "reviewed")
    assert seeded.high not in _batches(engine, "unreviewed")


def _batches(engine, status: str) -> set[int]:
    return {r["batch_id"] for r in worklist(engine, WorklistFilter(status=status)).rows}  # type: ignore[arg-type]


def test_dates_prefix_and_paging(seeded) -> None:
    engine = dashboard_engine(seeded.settings)
    today = date.today()
    study = _row(engine, seeded.low)["study"]
    prefix = study[:-1]  # five of the tag's six random hex digits: other seeded studies differ
    ours = worklist(engine, WorklistFilter(study=prefix, since=today, until=today))
    assert [r["batch_id"] for r in ours.rows] == [seeded.low]
    assert worklist(engine, WorklistFilter(until=today - timedelta(days=1))).total == 0
    assert worklist(engine, WorklistFilter(study=prefix, since=today + timedelta(1))).total == 0
    hostile = worklist(engine, WorklistFilter(study="%' OR 1=1 --"))
    assert hostile.total == 0
    total = worklist(engine, WorklistFilter()).total
    first = worklist(engine, WorklistFilter(page_size=2))
    second = worklist(engine, WorklistFilter(page_size=2, page=2))
    assert first.pages == -(-total // 2) and len(first.rows) == 2
    assert not {r["batch_id"] for r in first.rows} & {r["batch_id"] for r in second.rows}
    risks = [r["max_p_malignant"] for r in first.rows + second.rows]
    assert risks == sorted(risks, reverse=True)
    with pytest.raises(ValueError):
        worklist(engine, WorklistFilter(status="everything"))  # type: ignore[arg-type]


def teach_priority(row: dict) -> float:
    """The documented teach priority (sql/0008.teach-order.sql, lung_model.review.worklist)."""
    unlike = 1.0 if row["acquisition_outside"] else 0.0
    unsure = 1.0 if row["needs_review"] else 0.0
    changed = (row["acquisition_sensitivity"] or {}).get("changed", {})
    share = len(changed) / row["acquisition_sensitivity"]["n_slices"] if changed else 0.0
    return unlike + unsure + share + 1.0 - 2.0 * abs(row["max_p_malignant"] - 0.5)


def test_teach_the_model_orders_by_the_documented_priority(signed_in, seeded) -> None:
    """Issue 22 item 4: the 'teach the model' order adds up, each from 0 to 1: unlike the
    training scans (the acquisition guard's flag), the model unsure, the share of checked
    slices whose call another export changes, the verdict's closeness to 0.5; the
    riskiest-first order is unchanged."""
    engine = dashboard_engine(seeded.settings)
    mine = (seeded.high, seeded.uncertain, seeded.low)

    def order(name: str) -> list[int]:
        rows = worklist(engine, WorklistFilter(order=name, page_size=500)).rows  # type: ignore[arg-type]
        for row in rows:
            assert row["teach_priority"] == pytest.approx(teach_priority(row))
        return [row["batch_id"] for row in rows if row["batch_id"] in mine]

    assert order("risk") == [seeded.high, seeded.uncertain, seeded.low]
    assert order("teach") == [seeded.uncertain, seeded.high, seeded.low]  # |0.97-.5| < |0.02-.5|
    # the guard flagged the low study, and another export changes the call on 1 of its 2
    # slices: 1 + 0.5 + 0.04 is still below the unsure study's 1 + 0.9
    sensitive = {
        "perturbations": ["smoothed"],
        "n_slices": 2,
        "changed": {"slice-00.jpg": ["smoothed"]},
    }
    with db.get_engine(seeded.settings).begin() as owner:
        owner.execute(
            text(
                "UPDATE study_results SET acquisition_outside = CAST(:o AS jsonb),"
                " acquisition_sensitivity = CAST(:s AS jsonb), sensitivity_share = 0.5"
                " WHERE batch_id = :b"
            ),
            {
                "o": '[{"measurement": "noise", "side": "below"}]',
                "s": json.dumps(sensitive),
                "b": seeded.low,
            },
        )
    assert order("teach") == [seeded.uncertain, seeded.low, seeded.high]
    # on both of its slices: 1 + 1 + 0.04 comes first
    sensitive["changed"]["slice-01.jpg"] = ["smoothed"]
    with db.get_engine(seeded.settings).begin() as owner:
        owner.execute(
            text(
                "UPDATE study_results SET acquisition_sensitivity = CAST(:s AS jsonb),"
                " sensitivity_share = 1.0 WHERE batch_id = :b"
            ),
            {"s": json.dumps(sensitive), "b": seeded.low},
        )
    assert order("teach") == [seeded.low, seeded.uncertain, seeded.high]
    with pytest.raises(ValueError, match="unknown order"):
        worklist(engine, WorklistFilter(order="newest"))  # type: ignore[arg-type]

    app = signed_in()
    app.segmented_control(key="wl_status").set_value("all").run()
    app.segmented_control(key="wl_order").set_value("teach").run()
    assert not app.exception, app.exception
    shown = [b for b in app.dataframe[0].value["batch"] if b in mine]
    while len(shown) < len(mine) and not app.button(key="wl_next").disabled:
        app.button(key="wl_next").click().run()  # other tests' studies fill the first pages
        shown += [b for b in app.dataframe[0].value["batch"] if b in mine]
    assert shown == [seeded.low, seeded.uncertain, seeded.high]
    assert any("teach the model most first" in c.value for c in app.caption)
