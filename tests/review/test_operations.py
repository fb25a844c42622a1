"""Operations numbers: one number per fact (issue 13, items 8 and 12)."""

from __future__ import annotations

import os
import time
import uuid

from sqlalchemy import text

from lung_model.platform.db import get_engine
from lung_model.platform.names import stored_names
from lung_model.review.operations import age, drift_summary, inbox_waiting, status_counts


def test_drift_counts_the_slices_that_slices_scored_counts(settings) -> None:
    """Two slices with identical bytes are two slices scored but one stored prediction; the
    drift table counted predictions (33 against 34 in the demo)."""
    engine = get_engine(settings)
    model, sha = f"ops-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex * 2
    before = status_counts(engine)["scored"]
    with engine.begin() as connection:
        batch = connection.execute(
            text(
                "INSERT INTO scan_batches (study, source_path, status, n_files, n_scored,"
                " model_name, model_version, finished_at) VALUES (:s, '/in', 'done', 2, 2, :m,"
                " '1', now()) RETURNING id"
            ),
            {"s": model, "m": model},
        ).scalar_one()
        for path in ("a.jpg", "copy-of-a.jpg"):
            connection.execute(
                text(
                    "INSERT INTO images (batch_id, path, sha256, status)"
                    " VALUES (:b, :p, :sha, 'scored')"
                ),
                {"b": batch, "p": path, "sha": sha},
            )
        connection.execute(
            text(
                "INSERT INTO predictions (image_sha256, model_name, model_version, data_version,"
                " p_normal, p_benign, p_malignant, predicted_class)"
                " VALUES (:sha, :m, '1', 'd', 0.7, 0.2, 0.1, 'normal')"
            ),
            {"sha": sha, "m": model},
        )
        connection.execute(
            text(
                "INSERT INTO study_results (batch_id, model_name, model_version, data_version,"
                " n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices,"
                " predicted_class, needs_review) VALUES (:b, :m, '1', 'd', 2, 0.1, 0.1, 0,"
                " 'normal', false)"
            ),
            {"b": batch, "m": model},
        )
    assert status_counts(engine)["scored"] - before == 2
    (ours,) = [row for row in drift_summary(engine, 7) if row["model"] == model]
    assert (ours["recent_n"], ours["before_n"]) == (2, 0)
    assert ours["recent_normal"] == 1.0


def test_inbox_lists_what_waits_without_a_marker_with_its_age(settings) -> None:
    settings.inbox.mkdir(parents=True, exist_ok=True)
    unready = settings.inbox / "study-no-marker"
    unready.mkdir()
    (unready / "1.jpg").write_bytes(b"x")
    hour_ago = time.time() - 3600
    for path in (unready / "1.jpg", unready):
        os.utime(path, (hour_ago, hour_ago))
    ready = settings.inbox / "study-ready"
    ready.mkdir()
    (ready / settings.ready_marker).touch()
    (settings.inbox / "stray.txt").write_text("?")
    folder_marker = settings.inbox / "study-marker-folder"
    (folder_marker / settings.ready_marker).mkdir(parents=True)
    for path in (folder_marker / settings.ready_marker, folder_marker):
        os.utime(path, (hour_ago + 60, hour_ago + 60))

    waiting = inbox_waiting(settings)
    assert [row["in inbox"] for row in waiting] == [
        "study-no-marker",
        "study-marker-folder",
        "stray.txt",
    ]
    assert waiting[0]["unchanged for"] == "1 h 0 min"
    assert waiting[0]["waiting because"] == f"no {settings.ready_marker} marker"
    assert waiting[1]["waiting because"] == f"{settings.ready_marker} is a folder, not a file"
    assert waiting[2]["waiting because"] == "a file, not a study folder"
    settings.pseudonymise_names = True  # the page shows no folder name then
    assert inbox_waiting(settings)[0]["in inbox"] == stored_names(settings).name("study-no-marker")


def test_ages_read_like_a_person_would_say_them() -> None:
    assert [age(s) for s in (42, 720, 12_000, 190_000)] == [
        "42 s",
        "12 min",
        "3 h 20 min",
        "2 d 4 h",
    ]
