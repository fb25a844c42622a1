"""The daily checks on the real PostgreSQL, and alerts reaching a real (local) webhook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from lung_model import settings as settings_module
from lung_model.pipelines import monitoring
from lung_model.platform import db
from lung_model.review.operations import acquisition_counts, status_counts
from lung_model.settings import Settings


@pytest.fixture
def fresh(tmp_path: Path, empty_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings on a database of this test's own (the checks count every row)."""
    monkeypatch.setenv("LUNG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", empty_pg_url)
    monkeypatch.setenv("LUNG_MONITOR_MAX_BACKLOG", "1")
    settings_module.get_settings.cache_clear()
    yield settings_module.get_settings()
    settings_module.get_settings.cache_clear()


def add_scored_study(
    settings: Settings, study: str, status: str, predicted: str, same_bytes: bool = False
) -> int:
    """A study of two slices with their predictions; a study result when it is done.
    `same_bytes`: the two slices are exact copies (one stored prediction)."""
    with db.get_engine(settings).begin() as connection:
        batch = connection.execute(
            text("""INSERT INTO scan_batches (study, source_path, status, n_files, n_scored)
                    VALUES (:s, :p, :st, 2, :n) RETURNING id"""),
            {"s": study, "p": f"/inbox/{study}", "st": status, "n": 2 if status == "done" else 0},
        ).scalar_one()
        shas = [f"{study}{0 if same_bytes else n}".ljust(64, "0") for n in range(2)]
        for n, sha in enumerate(shas):
            connection.execute(
                text("""INSERT INTO images (batch_id, path, sha256, status)
                        VALUES (:b, :p, :sha, 'scored')"""),
                {"b": batch, "p": f"{n}.jpg", "sha": sha},
            )
        for sha in set(shas):
            connection.execute(
                text("""INSERT INTO predictions (image_sha256, model_name, model_version,
                        data_version, p_normal, p_benign, p_malignant, predicted_class)
                        VALUES (:sha, 'm', '1', 'd', 0.9, 0.05, 0.05, :c)"""),
                {"sha": sha, "c": predicted},
            )
        if status == "done":
            connection.execute(
                text("""INSERT INTO study_results (batch_id, model_name, model_version,
                        data_version, n_slices, max_p_malignant, mean_p_malignant,
                        n_malignant_slices, predicted_class, needs_review)
                        VALUES (:b, 'm', '1', 'd', 2, 0.05, 0.05, 0, :c, false)"""),
                {"b": batch, "c": predicted},
            )
    return int(batch)


def test_psi_is_zero_for_the_same_mix_and_large_for_a_shift() -> None:
    assert monitoring.psi({"normal": 10, "benign": 5}, {"normal": 20, "benign": 10}) == 0
    assert monitoring.psi({"normal": 1, "benign": 1, "malignant": 1}, {"normal": 1}) > 1


def test_checks_find_drift_backlog_and_failures(fresh: Settings) -> None:
    add_scored_study(fresh, "a", "done", "normal")
    add_scored_study(fresh, "b", "done", "normal")
    add_scored_study(fresh, "c", "failed", "normal")
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(days=1)
    report = monitoring.run_checks(start, end, fresh)
    assert report["predicted_mix"] == {"normal": 4.0}  # the failed study scored no slice
    assert report["training_mix"]["malignant"] > 0  # from data/raw/MANIFEST.csv
    assert report["psi"] > fresh.monitor_max_psi
    assert report["review_backlog"] == 2 and report["failed_batches"] == 1
    assert len(report["breaches"]) == 3
    monitoring.run_checks(start, end, fresh)  # a rerun of the window replaces its row
    with db.get_engine(fresh).connect() as connection:
        rows = connection.execute(text("SELECT breaches FROM monitoring_checks")).all()
    assert len(rows) == 1 and len(rows[0][0]) == 3
    quiet = monitoring.run_checks(end, end + timedelta(days=1), fresh)  # the next day
    assert quiet["psi"] is None and quiet["failed_batches"] == 0


def test_drift_counts_two_identical_slices_as_two(fresh: Settings) -> None:
    """One stored prediction, two scored slices: the checks count what "Slices scored" on
    the Operations page counts (it said 34 where drift said 33, issue 13 item 12)."""
    add_scored_study(fresh, "copies", "done", "malignant", same_bytes=True)
    end = datetime.now(UTC) + timedelta(minutes=1)
    report = monitoring.run_checks(end - timedelta(days=1), end, fresh)
    assert report["predicted_mix"] == {"malignant": 2.0}
    assert status_counts(db.get_engine(fresh))["scored"] == 2  # the Operations page's number


def test_acquisition_drift_counts_the_guarded_studies_unlike_training(fresh: Settings) -> None:
    """Of the studies a model with an acquisition range scored, the share unlike its training
    scans (issue 19): over LUNG_MONITOR_MAX_UNLIKE_TRAINING it is a breach; studies a model
    without a range scored (unguarded) count for neither side."""
    like, unlike, _ = (add_scored_study(fresh, s, "done", "normal") for s in ("x", "y", "z"))
    noise = {"measurement": "noise", "side": "below", "value": 0.002, "low": 0.004}
    noise |= {"high": 0.009, "n_outside": 2, "n_slices": 2}
    with db.get_engine(fresh).begin() as connection:
        for batch, outside in ((like, "[]"), (unlike, json.dumps([noise]))):
            connection.execute(
                text("""UPDATE study_results SET acquisition_range = '{"noise": [0.004, 0.009]}',
                        acquisition_outside = CAST(:outside AS jsonb) WHERE batch_id = :b"""),
                {"b": batch, "outside": outside},
            )
    end = datetime.now(UTC) + timedelta(minutes=1)
    report = monitoring.run_checks(end - timedelta(days=1), end, fresh)
    expected = {"guarded": 2, "unlike": 1, "by_measurement": {"pixel noise below": 1}}
    assert report["unlike_training"] == expected
    assert (
        "acquisition drift: 1 of 2 studies (50%) unlike the scans their model learned from"
        " (pixel noise below: 1) > 20%" in report["breaches"]
    )
    unlike, _ = acquisition_counts(db.get_engine(fresh))
    assert unlike == expected  # the Operations page's count
    assert monitoring.acquisition_breach(expected, 0.5) is None  # 50% is not over 50%
    later = monitoring.run_checks(end, end + timedelta(days=1), fresh)
    assert later["unlike_training"] == {"guarded": 0, "unlike": 0, "by_measurement": {}}


def test_the_daily_check_counts_studies_whose_calls_another_export_changes(
    fresh: Settings,
) -> None:
    """Issue 22: of the studies checked under other exports in the window, those whose call
    changes on at least a quarter of their checked slices; reported, not alerted on."""
    calm, shaky, _ = (add_scored_study(fresh, s, "done", "normal") for s in ("p", "q", "r"))
    with db.get_engine(fresh).begin() as connection:
        for batch, share in ((calm, 0.0), (shaky, 0.25)):
            connection.execute(
                text("UPDATE study_results SET sensitivity_share = :s WHERE batch_id = :b"),
                {"b": batch, "s": share},
            )
    end = datetime.now(UTC) + timedelta(minutes=1)
    report = monitoring.run_checks(end - timedelta(days=1), end, fresh)
    assert report["sensitive_to_export"] == {"checked": 2, "sensitive": 1}
    assert not any("export" in breach for breach in report["breaches"])
    later = monitoring.run_checks(end, end + timedelta(days=1), fresh)
    assert later["sensitive_to_export"] == {"checked": 0, "sensitive": 0}
