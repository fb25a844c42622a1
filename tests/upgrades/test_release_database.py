"""A results database made by release 6514801 (the release before the layout issue; dump in
tests/fixtures/release-6514801) opens with the current code: migrated to the current schema,
its studies, reviews and promotion history read by today's worklist, study page and `info`."""

from __future__ import annotations

from pathlib import Path

import pytest
from release_fixture import ORIGIN, Migrated, install_store, restore_database, schema

from lung_model import settings as settings_module
from lung_model.cli.main import main
from lung_model.platform import db
from lung_model.review.model_card import promotion_history
from lung_model.review.reviews import add_review, latest_study_review, review_history
from lung_model.review.studies import get_study, study_slices
from lung_model.review.worklist import WorklistFilter, worklist
from lung_model.settings import Settings

ROWS = ORIGIN["rows"]
RELEASED_MIGRATIONS = {  # as its _yoyo_migration table records them
    "0001.results-schema",
    "0002.scoring-lineage",
    "0003.dashboard-role",
    "0003.dashboard-worklist",
    "0004.feedback-and-monitoring",
}
A, B = (ORIGIN["studies"][name] for name in ("release-study-a", "release-study-b"))


def test_the_release_database_opens_with_the_current_code(
    empty_pg_url: str,
    migrated_in_one_go: Migrated,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    restore_database(empty_pg_url)
    settings = Settings(_env_file=None, home=tmp_path / "home", database_url=empty_pg_url)

    # its yoyo records list the migrations it had; the ones added since are applied now
    added = [m for m in migrated_in_one_go.order if m not in RELEASED_MIGRATIONS]
    assert db.migrate(empty_pg_url) == added
    engine = db.get_engine(settings)
    assert schema(empty_pg_url) == migrated_in_one_go.schema
    assert db.row_counts(engine, tuple(ROWS)) == ROWS  # every table, as the release left it

    page = worklist(engine, WorklistFilter(status="disagreement"))
    assert sorted(row["batch_id"] for row in page.rows) == sorted((A, B))
    risks = [row["max_p_malignant"] for row in page.rows]
    assert risks == sorted(risks, reverse=True)  # riskiest first, as the worklist orders
    by_batch = {row["batch_id"]: row for row in page.rows}
    assert by_batch[A]["reviewed_label"] == "benign" and by_batch[B]["reviewed_label"] == "normal"
    assert (by_batch[A]["n_files"], by_batch[A]["n_quarantined"]) == (4, 1)

    study = get_study(engine, A)
    assert study is not None and study["study"] == "release-study-a" and study["archive_path"]
    result = study["results"][0]
    assert (result["model_name"], result["model_version"]) == (ORIGIN["model_name"], "1")
    slices = study_slices(engine, A, result["model_name"], result["model_version"])
    scored = [s for s in slices if s["status"] == "scored"]
    assert len(scored) == 3 and all(s["p_malignant"] is not None for s in scored)
    assert any(s["format"] == "dicom" for s in scored)
    (refused,) = [s for s in slices if s["status"] == "quarantined"]
    assert refused["path"] == "notes.jpg" and refused["reason"]
    assert [(s["reviewer"], s["decision"]) for s in scored if s["decision"]] == [
        ("dr-release", "confirm")  # the slice review
    ]

    trail = review_history(engine, A)
    assert [r["comment"] for r in trail] == ["this slice", "second look", "first look"]
    latest = latest_study_review(engine, A)
    assert latest is not None and (latest["decision"], latest["label"]) == ("correct", "benign")
    add_review(  # today's code appends to the old trail, and the worklist follows
        engine,
        batch_id=A,
        reviewer="dr-today",
        label=result["predicted_class"],
        predicted_class=result["predicted_class"],
        model_name=result["model_name"],
        model_version=result["model_version"],
    )
    assert len(review_history(engine, A)) == len(trail) + 1
    assert (
        worklist(engine, WorklistFilter(study=str(A))).rows[0]["reviewed_label"]
        == (result["predicted_class"])
    )

    events = promotion_history(engine, ORIGIN["model_name"])
    assert sorted(e["decision"] for e in events) == ["override", "rejected"]

    install_store(settings.home)
    monkeypatch.setenv("LUNG_HOME", str(settings.home))
    monkeypatch.setenv("DATABASE_URL", empty_pg_url)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings_module.get_settings.cache_clear()
    try:
        assert main(["info"]) == 0
    finally:
        settings_module.get_settings.cache_clear()
    counts = {table: ROWS[table] for table in db.RESULT_TABLES}
    counts["reviews"] += 1
    rows = ", ".join(f"{table} {n}" for table, n in counts.items())
    assert f"rows  {rows}" in capsys.readouterr().out
