"""Clinician reviews back into the labelled data: a new DVC version that retraining picks up.

A study's label is its latest study-level review: the corrected label, or for a confirmation
the class the reviewed model predicted. Its scored slices are copied (checked against the
sha256 recorded when they were scored) to `data/raw/<Class> cases/reviewed/<batch>-<study>/`
and listed in MANIFEST.csv, then `dvc add` + `dvc push` make a new data version. A study
reviewed again is moved to its new class; `feedback_exports` remembers what was exported so a
re-run exports nothing twice. Commit `data/raw.dvc` afterwards to publish the version.
See https://dvc.org/doc/command-reference/add
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import text

from lung_model.data import dvc
from lung_model.platform import db
from lung_model.platform.names import StoredNames, stored_names
from lung_model.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)
CLASS_FOLDERS = {"normal": "Normal cases", "benign": "Bengin cases", "malignant": "Malignant cases"}
REVIEWED = "reviewed"

PENDING = text("""
    WITH latest AS (
        SELECT DISTINCT ON (r.batch_id) r.*
        FROM reviews r WHERE r.image_id IS NULL
        ORDER BY r.batch_id, r.created_at DESC, r.id DESC
    )
    SELECT l.id AS review_id, l.batch_id, b.study, b.source_path,
           to_jsonb(b) ->> 'archive_path' AS archive_path,
           COALESCE(l.corrected_label, (
               SELECT s.predicted_class FROM study_results s
               WHERE s.batch_id = l.batch_id
                 AND (l.model_version IS NULL OR s.model_version = l.model_version)
               ORDER BY s.created_at DESC LIMIT 1)) AS label
    FROM latest l JOIN scan_batches b ON b.id = l.batch_id
    WHERE NOT EXISTS (SELECT 1 FROM feedback_exports e WHERE e.review_id = l.id)
    ORDER BY l.batch_id""")

SCORED_IMAGES = text("""
    SELECT path, sha256 FROM images
    WHERE batch_id = :batch_id AND status = 'scored' ORDER BY path""")


def study_key(batch_id: int, study: str) -> str:
    return f"{batch_id}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("_")


def find_file(
    relative: str, sha256: str, folders: list[Path], names: StoredNames | None = None
) -> Path | None:
    """The first copy of a scored file in `folders` whose content still matches; `relative`
    as the database stores it (a pseudonym with `LUNG_PSEUDONYMISE_NAMES`)."""
    for folder in folders:
        candidate = (names or StoredNames()).find(folder, relative)
        if candidate is not None and dvc.sha256_of(candidate) == sha256.strip():
            return candidate
    return None


def exported_as(relative: str, file: Path) -> str:
    """The copy's path in the dataset: as stored, with the file's suffix when the stored
    name is a pseudonym (the dataset takes images by suffix)."""
    return relative if relative.endswith(file.suffix) else relative + file.suffix


def study_folders(
    settings: Settings, study: str, source_path: str, key: str, archive_path: str | None = None
) -> list[Path]:
    """Where a scored study's files may be: its recorded archive, the archive, its source."""
    return [
        *([Path(archive_path)] if archive_path else []),
        settings.archive / key,
        settings.archive / study,
        settings.processing / study,
        Path(source_path),
    ]


def _rewrite_manifest(data_dir: Path, key: str, rows: list[dict[str, str]]) -> None:
    manifest = data_dir / "MANIFEST.csv"
    kept = [
        row
        for row in csv.DictReader(manifest.open())
        if f"/{REVIEWED}/{key}/" not in f"/{row['path']}"
    ]
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "sha256"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("path", "label", "sha256")} for r in kept + rows)


def place_study(data_dir: Path, key: str, label: str, files: list[tuple[str, Path]]) -> int:
    """Put one study's files under its class (removing an earlier export) and list them."""
    for folder in data_dir.glob(f"*/{REVIEWED}/{key}"):
        shutil.rmtree(folder)
    target = data_dir / CLASS_FOLDERS[label] / REVIEWED / key
    rows = []
    for relative, source in files:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        rows.append(
            {
                "path": destination.relative_to(data_dir).as_posix(),
                "label": label,
                "sha256": dvc.sha256_of(destination),
            }
        )
    _rewrite_manifest(data_dir, key, rows)
    return len(rows)


def export_reviews(settings: Settings, repo: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Export every not-yet-exported latest review into `repo`'s data/raw; return what changed.

    `{"exported": n_studies, "images": n, "data_version": hash, "skipped": [...]}`;
    `exported == 0` means the data version did not change.
    """
    data_dir, dvc_file = repo / "data" / "raw", repo / "data" / "raw.dvc"
    engine = db.get_engine(settings)
    with engine.connect() as connection:
        pending = [dict(row._mapping) for row in connection.execute(PENDING)]
    done: list[tuple[dict[str, Any], int]] = []
    skipped: list[str] = []
    names = stored_names(settings)
    for review in pending:
        key = study_key(review["batch_id"], review["study"])
        with engine.connect() as connection:
            scored = list(connection.execute(SCORED_IMAGES, {"batch_id": review["batch_id"]}))
        places = study_folders(
            settings, review["study"], review["source_path"], key, review["archive_path"]
        )
        folders = [f for f in (names.locate(str(place)) for place in places) if f is not None]
        files = [(path, find_file(path, sha, folders, names)) for path, sha in scored]
        found = [(exported_as(path, file), file) for path, file in files if file is not None]
        if review["label"] is None or not found:
            skipped.append(f"{review['study']}: no label or no scored files found")
            continue
        if len(found) < len(files):
            log.warning("%s: %d of %d files not found", key, len(files) - len(found), len(files))
        done.append((review, place_study(data_dir, key, review["label"], found)))
    if not done:
        return {
            "exported": 0,
            "images": 0,
            "data_version": dvc.data_version(dvc_file),
            "skipped": skipped,
        }
    dvc.dvc("add", "--quiet", "data/raw", repo=repo)
    dvc.dvc("push", "--quiet", "data/raw.dvc", repo=repo)
    version = dvc.data_version(dvc_file)
    with engine.begin() as connection:
        for review, n_images in done:
            connection.execute(
                text("""
                    INSERT INTO feedback_exports (review_id, batch_id, label, n_images, data_version)
                    VALUES (:review_id, :batch_id, :label, :n, :version)
                    ON CONFLICT (review_id) DO NOTHING"""),
                {**review, "n": n_images, "version": version},
            )
    log.info("exported %d reviewed studies as data version %s", len(done), version)
    return {
        "exported": len(done),
        "images": sum(n for _, n in done),
        "data_version": version,
        "skipped": skipped,
    }
