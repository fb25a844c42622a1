"""Scoring results into PostgreSQL: one batch row per study folder, bulk upserts per batch.

Everything is idempotent: images upsert on (batch, path), predictions insert-or-ignore on
(image sha256, model name, model version), study results upsert on (batch, model), so a
repeated or retried run adds nothing twice. Bulk writes use psycopg2's `execute_values`
(one statement per table per batch) inside one transaction per batch.
See https://www.psycopg.org/docs/extras.html#fast-execution-helpers
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg2.extras import Json, execute_values
from sqlalchemy import Engine, text
from sqlalchemy.pool import PoolProxiedConnection

from lung_model.scoring.guard import Deviation, Range
from lung_model.scoring.predictor import Predictor, slice_class
from lung_model.scoring.sensitivity import Sensitivity
from lung_model.scoring.study import SliceStats


@dataclass(frozen=True)
class ImageRow:
    path: str
    sha256: str | None
    format: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    status: str  # scored | quarantined
    reason: str | None
    patient_hash: str | None = None
    instance_number: int | None = None
    acquisition: dict[str, float] | None = None  # measured for a guarded model (scoring.guard)


Probabilities = tuple[float, float, float]


@dataclass(frozen=True)
class AcquisitionCheck:
    """A guarded study's check (`scoring.guard`): the model's range, the deviations."""

    allowed: Range
    outside: list[Deviation]


def open_batch(engine: Engine, study: str, source_path: str, model: Predictor) -> int:
    """The batch row of this study folder (created, or reopened when resumed); its id."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO scan_batches (study, source_path, status, model_name, model_version)"
                    " VALUES (:study, :source, 'processing', :name, :version)"
                    " ON CONFLICT (study, source_path) DO UPDATE SET status = 'processing',"
                    " model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version,"
                    " finished_at = NULL, error = NULL RETURNING id"
                ),
                {
                    "study": study,
                    "source": source_path,
                    "name": model.name,
                    "version": model.version,
                },
            ).scalar_one()
        )


def known_predictions(
    engine: Engine, model: Predictor, shas: Iterable[str]
) -> dict[str, Probabilities]:
    """Probabilities this model version already stored for these images."""
    wanted = sorted(set(shas))
    if not wanted:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT image_sha256, p_normal, p_benign, p_malignant FROM predictions"
                " WHERE model_name = :name AND model_version = :version"
                " AND image_sha256 = ANY(:shas)"
            ),
            {"name": model.name, "version": model.version, "shas": wanted},
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


def write_batch(
    engine: Engine,
    batch_id: int,
    images: Sequence[ImageRow],
    predictions: dict[str, Probabilities],
    model: Predictor,
    session: PoolProxiedConnection | None = None,
    perturbed: dict[str, dict[str, str]] | None = None,
) -> None:
    """Upsert the images and insert the new predictions in one transaction, on `session`
    when given (the one holding the claim's lock, see `inbox.ClaimLock`; kept open);
    `perturbed`: {sha256: {perturbation: call}} of the guard's slices (`scoring.sensitivity`)
    onto their predictions (the same for the same image and model: recomputed, unchanged)."""
    raw = session or engine.raw_connection()
    cursor = raw.cursor()
    try:
        if images:
            execute_values(
                cursor,
                "INSERT INTO images (batch_id, path, sha256, format, size_bytes, width, height,"
                " status, reason, patient_hash, instance_number, acquisition) VALUES %s"
                " ON CONFLICT (batch_id, path) DO UPDATE SET sha256 = EXCLUDED.sha256,"
                " format = EXCLUDED.format, size_bytes = EXCLUDED.size_bytes,"
                " width = EXCLUDED.width, height = EXCLUDED.height, status = EXCLUDED.status,"
                " reason = EXCLUDED.reason, patient_hash = EXCLUDED.patient_hash,"
                " instance_number = EXCLUDED.instance_number, acquisition = EXCLUDED.acquisition",
                [
                    (batch_id, r.path, r.sha256, r.format, r.size_bytes, r.width, r.height)
                    + (r.status, r.reason, r.patient_hash, r.instance_number)
                    + (None if r.acquisition is None else Json(r.acquisition),)
                    for r in images
                ],
                page_size=max(len(images), 1),
            )
        if predictions:
            execute_values(
                cursor,
                "INSERT INTO predictions (image_sha256, model_name, model_version,"
                " data_version, p_normal, p_benign, p_malignant, predicted_class) VALUES %s"
                " ON CONFLICT (image_sha256, model_name, model_version) DO NOTHING",
                [
                    (sha, model.name, model.version, model.data_version, *probs)
                    + (slice_class(model, probs),)
                    for sha, probs in predictions.items()
                ],
                page_size=max(len(predictions), 1),
            )
        if perturbed:
            execute_values(
                cursor,
                "UPDATE predictions p SET perturbed_calls = v.calls::jsonb"
                " FROM (VALUES %s) AS v (sha, name, version, calls) WHERE p.image_sha256 = v.sha"
                " AND p.model_name = v.name AND p.model_version = v.version",
                [(sha, model.name, model.version, Json(c)) for sha, c in perturbed.items()],
                page_size=max(len(perturbed), 1),
            )
        raw.commit()
    except BaseException:
        if raw.dbapi_connection is not None and raw.dbapi_connection.closed:
            raw.invalidate()  # the server closed it (a restart): nothing to roll back, and a
        else:  # rollback would raise "connection already closed" in place of the real error
            raw.rollback()
        raise
    finally:
        cursor.close()
        if session is None:
            raw.close()


def patients_in_batch(engine: Engine, batch_id: int) -> int:
    """How many patients the batch's scored slices name (by keyed hash; slices without one,
    JPEG and PNG, name none)."""
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT count(DISTINCT patient_hash) FROM images"
                " WHERE batch_id = :batch AND status = 'scored'"
            ),
            {"batch": batch_id},
        ).scalar_one()
    return int(found)


def slice_stats(engine: Engine, batch_id: int, model: Predictor, threshold: float) -> SliceStats:
    """Aggregates over the batch's scored slices, as this model version predicted them."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), coalesce(max(p.p_malignant), 0), coalesce(avg(p.p_malignant), 0),"
                " coalesce(avg(p.p_normal), 0), coalesce(avg(p.p_benign), 0),"
                " count(*) FILTER (WHERE p.p_malignant >= :threshold)"
                " FROM images i JOIN predictions p ON p.image_sha256 = i.sha256"
                " AND p.model_name = :name AND p.model_version = :version"
                " WHERE i.batch_id = :batch AND i.status = 'scored'"
            ),
            {
                "batch": batch_id,
                "name": model.name,
                "version": model.version,
                "threshold": threshold,
            },
        ).one()
    return SliceStats(
        n_slices=int(row[0]),
        max_p_malignant=float(row[1]),
        mean_p_malignant=float(row[2]),
        mean_p_normal=float(row[3]),
        mean_p_benign=float(row[4]),
        n_malignant_slices=int(row[5]),
    )


def slice_probabilities(engine: Engine, batch_id: int, model: Predictor) -> np.ndarray:
    """(n, 3) probabilities of the batch's scored slices, as this model version predicted."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.p_normal, p.p_benign, p.p_malignant"
                " FROM images i JOIN predictions p ON p.image_sha256 = i.sha256"
                " AND p.model_name = :name AND p.model_version = :version"
                " WHERE i.batch_id = :batch AND i.status = 'scored' ORDER BY i.id"
            ),
            {"batch": batch_id, "name": model.name, "version": model.version},
        ).all()
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def slice_acquisitions(engine: Engine, batch_id: int) -> list[dict[str, float]]:
    """The acquisition measurements of the batch's scored slices that were measured."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT acquisition FROM images WHERE batch_id = :batch AND status = 'scored'"
                " AND acquisition IS NOT NULL ORDER BY id"
            ),
            {"batch": batch_id},
        ).scalars()
        return [dict(row) for row in rows]


def slice_perturbed_calls(
    engine: Engine, batch_id: int, model: Predictor
) -> list[tuple[str, str, dict[str, str]]]:
    """(path, call, calls under each perturbation) of the batch's measured slices this model
    version also scored perturbed (`scoring.sensitivity`); a slice whose content another
    study's check scored perturbed counts only where this study measured it too."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.path, p.predicted_class, p.perturbed_calls"
                " FROM images i JOIN predictions p ON p.image_sha256 = i.sha256"
                " AND p.model_name = :name AND p.model_version = :version"
                " WHERE i.batch_id = :batch AND i.status = 'scored'"
                " AND i.acquisition IS NOT NULL AND p.perturbed_calls IS NOT NULL ORDER BY i.id"
            ),
            {"batch": batch_id, "name": model.name, "version": model.version},
        ).all()
    return [(row[0], row[1], dict(row[2])) for row in rows]


def finish_batch(
    engine: Engine,
    batch_id: int,
    model: Predictor,
    stats: SliceStats,
    verdict: dict[str, Any] | None,
    error: str | None,
    check: AcquisitionCheck | None = None,
    sensitivity: Sensitivity | None = None,
) -> tuple[int, int, int]:
    """Write the study result (when there is one, with its acquisition `check` and
    `sensitivity` when the model is guarded) and close the batch; (files, scored,
    quarantined) as the database counts them."""
    with engine.begin() as conn:
        if verdict is not None:
            conn.execute(
                text(
                    "INSERT INTO study_results (batch_id, model_name, model_version, data_version,"
                    " n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices,"
                    " predicted_class, needs_review, acquisition_range, acquisition_outside,"
                    " acquisition_sensitivity, sensitivity_share)"
                    " VALUES (:batch, :name, :version, :data, :n, :max_p, :mean_p, :n_mal,"
                    " :label, :review, :allowed, :outside, :sensitivity, :share)"
                    " ON CONFLICT (batch_id, model_name, model_version) DO UPDATE SET"
                    " data_version = EXCLUDED.data_version, n_slices = EXCLUDED.n_slices,"
                    " max_p_malignant = EXCLUDED.max_p_malignant,"
                    " mean_p_malignant = EXCLUDED.mean_p_malignant,"
                    " n_malignant_slices = EXCLUDED.n_malignant_slices,"
                    " predicted_class = EXCLUDED.predicted_class,"
                    " needs_review = EXCLUDED.needs_review,"
                    " acquisition_range = EXCLUDED.acquisition_range,"
                    " acquisition_outside = EXCLUDED.acquisition_outside,"
                    " acquisition_sensitivity = EXCLUDED.acquisition_sensitivity,"
                    " sensitivity_share = EXCLUDED.sensitivity_share"
                ),
                {
                    "batch": batch_id,
                    "name": model.name,
                    "version": model.version,
                    "data": model.data_version,
                    "n": stats.n_slices,
                    "max_p": stats.max_p_malignant,
                    "mean_p": stats.mean_p_malignant,
                    "n_mal": stats.n_malignant_slices,
                    "label": verdict["predicted_class"],
                    "review": verdict["needs_review"],
                    "allowed": None if check is None else Json(check.allowed),
                    "outside": None
                    if check is None
                    else Json([d.as_dict() for d in check.outside]),
                    "sensitivity": None if sensitivity is None else Json(sensitivity.as_dict()),
                    "share": None if sensitivity is None else sensitivity.share,
                },
            )
        counts = conn.execute(
            text(
                "UPDATE scan_batches b SET status = :status, error = :error, finished_at = now(),"
                " n_files = c.n, n_scored = c.scored, n_quarantined = c.quarantined"
                " FROM (SELECT count(*) AS n, count(*) FILTER (WHERE status = 'scored') AS scored,"
                " count(*) FILTER (WHERE status = 'quarantined') AS quarantined"
                " FROM images WHERE batch_id = :batch) c"
                " WHERE b.id = :batch RETURNING c.n, c.scored, c.quarantined"
            ),
            {"batch": batch_id, "status": "failed" if error else "done", "error": error},
        ).one()
    return int(counts[0]), int(counts[1]), int(counts[2])


def set_archive_path(engine: Engine, batch_id: int, archive_path: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE scan_batches SET archive_path = :path WHERE id = :batch"),
            {"path": archive_path, "batch": batch_id},
        )


def earlier_batches(engine: Engine, study: str) -> list[tuple[int, str]]:
    """(id, archive path as stored) of the study's scored, archived batches that no batch
    supersedes yet (`scoring.grown`), oldest first. A claim being scored is not among them:
    its batch is archived last."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, archive_path FROM scan_batches WHERE study = :study"
                " AND status = 'done' AND archive_path IS NOT NULL AND superseded_by IS NULL"
                " ORDER BY id"
            ),
            {"study": study},
        ).all()
    return [(int(row[0]), str(row[1])) for row in rows]


def supersede(engine: Engine, earlier: Sequence[int], batch_id: int) -> None:
    """Mark the `earlier` batches superseded by `batch_id`, which scored their study whole:
    off the worklist (its trigger, sql/0009), their unsent reports never sent."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE scan_batches SET superseded_by = :batch WHERE id = ANY(:earlier)"),
            {"batch": batch_id, "earlier": list(earlier)},
        )
