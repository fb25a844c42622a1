"""One study for the study view: its batch, results per model version, slices and files.

Slices come with the prediction of the model version behind the study's latest result
(the version and data version are shown with it), with their latest slice review and, for a
guarded model, the acquisition measurements of the slices it measured.
`slice_file` finds a slice on disk (the archive path the scorer recorded, the default archive
folder, then where the folder was found) and refuses any path that would lead outside them.
See https://docs.sqlalchemy.org/en/20/core/connections.html#using-textual-sql
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import Engine, text

from lung_model.imaging.images import read_gray
from lung_model.platform.names import stored_names
from lung_model.scoring.guard import MEASUREMENTS, outside, parse_range
from lung_model.settings import Settings

_BATCH = text("SELECT * FROM scan_batches WHERE id = :batch_id")
_RESULTS = text(
    "SELECT * FROM study_results WHERE batch_id = :batch_id ORDER BY created_at DESC, id DESC"
)
_SLICES = text("""
SELECT i.id AS image_id, i.path, i.sha256, i.format, i.width, i.height, i.status, i.reason,
       i.acquisition,
       p.model_name, p.model_version, p.data_version,
       p.p_normal, p.p_benign, p.p_malignant, p.predicted_class,
       rv.decision, rv.corrected_label, rv.reviewer, rv.created_at AS reviewed_at
FROM images i
LEFT JOIN predictions p
  ON p.image_sha256 = i.sha256 AND p.model_name = :model_name AND p.model_version = :model_version
LEFT JOIN LATERAL (
    SELECT v.decision, v.corrected_label, v.reviewer, v.created_at
    FROM reviews v WHERE v.image_id = i.id
    ORDER BY v.created_at DESC, v.id DESC LIMIT 1
) rv ON true
WHERE i.batch_id = :batch_id
ORDER BY p.p_malignant DESC NULLS LAST, i.path
""")


def get_study(engine: Engine, batch_id: int) -> dict[str, Any] | None:
    """The batch with `results` (newest first; `results[0]` is what the worklist shows)."""
    with engine.connect() as connection:
        batch = connection.execute(_BATCH, {"batch_id": batch_id}).mappings().first()
        if batch is None:
            return None
        results = connection.execute(_RESULTS, {"batch_id": batch_id}).mappings().all()
    return {**batch, "results": [dict(result) for result in results]}


def study_slices(
    engine: Engine, batch_id: int, model_name: str | None, model_version: str | None
) -> list[dict[str, Any]]:
    """Every file of the study, riskiest slice first; quarantined files carry their reason."""
    params = {"batch_id": batch_id, "model_name": model_name, "model_version": model_version}
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(_SLICES, params).mappings()]


def quarantined_by_reason(slices: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The study's quarantined files as (reason, their paths), the largest group first: a
    study's second reconstruction quarantines every one of its files for one reason."""
    grouped: dict[str, list[str]] = {}
    for item in slices:
        if item["status"] == "quarantined":
            grouped.setdefault(item["reason"] or "no reason recorded", []).append(item["path"])
    return sorted(grouped.items(), key=lambda group: (-len(group[1]), group[0]))


def slice_unlike_training(item: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """The measurements of a measured slice outside its result's acquisition range, in
    words ('pixel noise'); [] when inside, not measured, or the model is unguarded."""
    allowed = parse_range(result.get("acquisition_range"))
    if not allowed or not item.get("acquisition"):
        return []
    return [MEASUREMENTS.get(name, name) for name in outside(item["acquisition"], allowed)]


def slice_file(settings: Settings, study: dict[str, Any], relative: str) -> Path | None:
    """The slice's file if it is still on disk: where the scorer archived the study, else the
    default archive folder, else where it was found (scored in place). Names may be stored
    as pseudonyms (`LUNG_PSEUDONYMISE_NAMES`): the disk keeps the real ones."""
    names = stored_names(settings)
    folders = [study.get("archive_path"), str(settings.archive / study["study"])]
    for folder in filter(None, [*folders, study["source_path"]]):
        root = names.locate(folder)
        if root is not None and (found := names.find(root, relative)):
            return found
    return None


def thumbnail(path: Path, size: int = 256) -> np.ndarray:
    """A small uint8 gray image of the slice, decoded the way scoring decodes it."""
    gray = read_gray(path).gray
    image = Image.fromarray((gray * 255).astype(np.uint8))
    image.thumbnail((size, size))
    return np.asarray(image)
