"""The rows `lung_model.scoring.store` writes, on the real PostgreSQL: one prediction per
image and model version, named by both; every write repeated adds nothing."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace

from scoring_helpers import rows
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.scoring import store
from lung_model.scoring.study import SliceStats


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def image(path: str, status: str = "scored") -> store.ImageRow:
    scored = status == "scored"
    return store.ImageRow(
        path=path,
        sha256=sha(path + uuid.uuid4().hex) if scored else None,
        format="png" if scored else None,
        size_bytes=100 if scored else 0,
        width=32 if scored else None,
        height=32 if scored else None,
        status=status,
        reason=None if scored else "empty file",
    )


def predictions_of(engine: Engine, shas: list[str]) -> list[tuple[object, ...]]:
    return rows(
        engine,
        "SELECT image_sha256, model_name, model_version, data_version, p_normal, p_benign,"
        " p_malignant, predicted_class FROM predictions WHERE image_sha256 = ANY(:shas)"
        " ORDER BY image_sha256, model_version",
        shas=shas,
    )


def test_a_batch_writes_each_image_once_and_each_prediction_once_per_model_version(
    engine: Engine, toy: ToyPredictor
) -> None:
    study = f"study-{uuid.uuid4().hex[:8]}"
    batch = store.open_batch(engine, study, f"/inbox/{study}", toy)
    assert store.open_batch(engine, study, f"/inbox/{study}", toy) == batch  # reopened

    images = [image("a.png"), image("b.png"), image("empty.png", "quarantined")]
    shas = [i.sha256 for i in images if i.sha256]
    probabilities = {shas[0]: (0.7, 0.2, 0.1), shas[1]: (0.1, 0.1, 0.8)}
    store.write_batch(engine, batch, images, probabilities, toy)

    stored = predictions_of(engine, shas)
    assert stored == sorted(
        (s, toy.name, toy.version, toy.data_version, *p, cls)
        for (s, p), cls in zip(probabilities.items(), ["normal", "malignant"], strict=True)
    )
    assert store.known_predictions(engine, toy, [*shas, sha("never scored")]) == probabilities
    images_rows = rows(
        engine, "SELECT path, status, reason FROM images WHERE batch_id = :b ORDER BY path", b=batch
    )
    assert images_rows == [
        ("a.png", "scored", None),
        ("b.png", "scored", None),
        ("empty.png", "quarantined", "empty file"),
    ]

    # the same batch written again, even with other numbers: nothing added, nothing replaced
    store.write_batch(
        engine, batch, images, {s: (0.0, 1.0, 0.0) for s in shas}, toy
    )  # a retry after a crash
    assert predictions_of(engine, shas) == stored
    assert len(rows(engine, "SELECT id FROM images WHERE batch_id = :b", b=batch)) == 3

    # another model version predicts the same images: rows of its own, named by its version
    newer = replace(toy, version=toy.version + "-b")
    store.write_batch(engine, batch, images, {shas[0]: (0.2, 0.3, 0.5)}, newer)
    by_version = rows(
        engine,
        "SELECT model_version, count(*) FROM predictions WHERE image_sha256 = ANY(:shas)"
        " GROUP BY model_version ORDER BY model_version",
        shas=shas,
    )
    assert by_version == [(toy.version, 2), (newer.version, 1)]


def test_the_predicted_class_follows_the_models_decision_rule(
    engine: Engine, toy: ToyPredictor
) -> None:
    """Malignant from the model's fitted threshold, not the arg-max."""
    careful = replace(toy, malignant_threshold=0.2)
    batch = store.open_batch(engine, "rule", f"/inbox/rule-{toy.version}", careful)
    slices = [image("s.png")]
    store.write_batch(engine, batch, slices, {slices[0].sha256: (0.6, 0.15, 0.25)}, careful)

    assert [r[-1] for r in predictions_of(engine, [slices[0].sha256])] == ["malignant"]


def test_finishing_a_batch_twice_keeps_one_study_result_and_the_database_counts(
    engine: Engine, toy: ToyPredictor
) -> None:
    batch = store.open_batch(engine, "finish", f"/inbox/finish-{toy.version}", toy)
    images = [image("a.png"), image("b.png"), image("bad.png", "quarantined")]
    shas = [i.sha256 for i in images if i.sha256]
    store.write_batch(engine, batch, images, {s: (0.1, 0.1, 0.8) for s in shas}, toy)

    stats = store.slice_stats(engine, batch, toy, threshold=0.5)
    assert stats == SliceStats(
        n_slices=2,
        max_p_malignant=0.8,
        mean_p_malignant=0.8,
        mean_p_normal=0.1,
        mean_p_benign=0.1,
        n_malignant_slices=2,
    )
    verdict = {"predicted_class": "malignant", "needs_review": True}
    assert store.finish_batch(engine, batch, toy, stats, verdict, None) == (3, 2, 1)
    assert store.finish_batch(engine, batch, toy, stats, verdict, None) == (3, 2, 1)

    results = rows(
        engine,
        "SELECT model_version, data_version, n_slices, predicted_class FROM study_results"
        " WHERE batch_id = :b",
        b=batch,
    )
    assert results == [(toy.version, toy.data_version, 2, "malignant")]
    status = rows(engine, "SELECT status, error FROM scan_batches WHERE id = :b", b=batch)
    assert status == [("done", None)]
