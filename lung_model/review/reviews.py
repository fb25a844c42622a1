"""Append-only reviews: a clinician confirms or corrects a study or one slice of it.

Each review records who (from the sign-in), when (the database clock), what, and the model
version it judged. A later review supersedes an earlier one in every view; none is ever
updated or deleted (a trigger and the dashboard role's grants both forbid it). The feedback
export turns these into new labelled data.
See https://www.postgresql.org/docs/current/ddl-priv.html
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import Engine, text

from lung_model.settings import CLASSES

Decision = Literal["confirm", "correct"]
MAX_COMMENT = 4000

_INSERT = text("""
INSERT INTO reviews (batch_id, image_id, reviewer, decision, corrected_label, comment,
                     model_name, model_version)
VALUES (:batch_id, :image_id, :reviewer, :decision, :corrected_label, :comment,
        :model_name, :model_version)
RETURNING id
""")
_HISTORY = text("""
SELECT v.id, v.created_at, v.reviewer, v.image_id, i.path AS slice, v.decision,
       v.corrected_label, v.comment, v.model_name, v.model_version
FROM reviews v LEFT JOIN images i ON i.id = v.image_id
WHERE v.batch_id = :batch_id
ORDER BY v.created_at DESC, v.id DESC
""")

_LATEST_STUDY_REVIEW = text("""
SELECT v.reviewer, v.decision, v.created_at, v.model_version,
       coalesce(v.corrected_label, sr.predicted_class) AS label
FROM reviews v
LEFT JOIN study_results sr ON sr.batch_id = v.batch_id
    AND sr.model_name = v.model_name AND sr.model_version = v.model_version
WHERE v.batch_id = :batch_id AND v.image_id IS NULL
ORDER BY v.created_at DESC, v.id DESC LIMIT 1
""")


def reviewed_label(
    decision: str | None, corrected: str | None, predicted: str | None
) -> str | None:
    """The label a review settled on: the correction, or the model's label it confirmed."""
    if decision is None:
        return None
    return corrected if decision == "correct" else predicted


def latest_study_review(engine: Engine, batch_id: int) -> dict[str, Any] | None:
    """The review that counts for the study (reviewer, decision, label, when), if any."""
    with engine.connect() as connection:
        row = connection.execute(_LATEST_STUDY_REVIEW, {"batch_id": batch_id}).mappings().first()
    return dict(row) if row else None


def add_review(
    engine: Engine,
    *,
    batch_id: int,
    reviewer: str,
    label: str,
    predicted_class: str | None,
    model_name: str | None,
    model_version: str | None,
    comment: str = "",
    image_id: int | None = None,
) -> int:
    """Record the reviewer's label: 'confirm' when it is the model's, else 'correct'."""
    if not reviewer:
        raise ValueError("a review needs a signed-in reviewer")
    if label not in CLASSES:
        raise ValueError(f"label must be one of {CLASSES}")
    decision: Decision = "confirm" if label == predicted_class else "correct"
    params: dict[str, Any] = {
        "batch_id": batch_id,
        "image_id": image_id,
        "reviewer": reviewer,
        "decision": decision,
        "corrected_label": None if decision == "confirm" else label,
        "comment": comment.strip()[:MAX_COMMENT] or None,
        "model_name": model_name,
        "model_version": model_version,
    }
    with engine.begin() as connection:
        return int(connection.execute(_INSERT, params).scalar_one())


def review_history(engine: Engine, batch_id: int) -> list[dict[str, Any]]:
    """Every review of the study and its slices, newest first (the audit trail)."""
    with engine.connect() as connection:
        return [
            dict(row) for row in connection.execute(_HISTORY, {"batch_id": batch_id}).mappings()
        ]
