"""Clinician reviews back into the labelled data: a new DVC version that retraining picks up.

A study's label is its latest study-level review: the corrected label, or for a confirmation
the class the reviewed model predicted. Its scored slices are copied (checked against the
sha256 recorded when they were scored) to `data/raw/<Class> cases/reviewed/<batch>-<study>/`
and listed in MANIFEST.csv; the counting lesion marks of its slices (`review_marks`) are
written to ANNOTATIONS.csv beside them (`lung_model.data.lesion_marks`), and the dataset's
README says how to read both. Then `dvc add` + `dvc push` make a new data version. A study
reviewed again is moved to its new class, and one marked again is exported again with its new
marks; `feedback_exports` and `feedback_mark_exports` remember what was exported, so a re-run
exports nothing twice. Commit `data/raw.dvc` afterwards to publish the version.
See https://dvc.org/doc/command-reference/add
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import text

from lung_model.data import dvc, lesion_marks
from lung_model.data.lesion_marks import Annotation
from lung_model.platform import db
from lung_model.platform.keys import PATIENT_KEY_FILE, keyed_hash, site_key
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
    ), marked AS (
        SELECT i.batch_id, max(m.id) AS last_mark_id
        FROM review_marks m JOIN images i ON i.id = m.image_id
        WHERE i.batch_id IN (SELECT batch_id FROM latest) GROUP BY i.batch_id
    )
    SELECT l.id AS review_id, l.batch_id, b.study, b.source_path, k.last_mark_id,
           to_jsonb(b) ->> 'archive_path' AS archive_path,
           COALESCE(l.corrected_label, (
               SELECT s.predicted_class FROM study_results s
               WHERE s.batch_id = l.batch_id
                 AND (l.model_version IS NULL OR s.model_version = l.model_version)
               ORDER BY s.created_at DESC LIMIT 1)) AS label
    FROM latest l JOIN scan_batches b ON b.id = l.batch_id
    LEFT JOIN marked k ON k.batch_id = l.batch_id
    WHERE NOT EXISTS (SELECT 1 FROM feedback_exports e WHERE e.review_id = l.id)
       OR k.last_mark_id > (SELECT coalesce(max(x.last_mark_id), 0)
                            FROM feedback_mark_exports x WHERE x.batch_id = l.batch_id)
    ORDER BY l.batch_id""")

SCORED_IMAGES = text("""
    SELECT id, path, sha256 FROM images
    WHERE batch_id = :batch_id AND status = 'scored' ORDER BY path""")

README_SECTION = "## Reviewed studies and lesion marks (written by the feedback export)"
README_TEXT = f"""
{README_SECTION}

Clinicians' reviews add studies under `<Class> cases/reviewed/<batch>-<study>/`: every scored
slice of a study whose latest review settled on that class (the class is the study's, as for
the release's folders), listed in MANIFEST.csv with its sha256. A study reviewed again moves
to its new class; nothing is listed twice.

`ANNOTATIONS.csv` holds the reviewers' lesion marks on those slices, one row per marked slice
(its newest mark counts; a withdrawn mark has no row):

| column | meaning |
| --- | --- |
| path | the slice, relative to this folder, as in MANIFEST.csv |
| label | the class of the study the slice belongs to |
| kind | `lesion`: the lesion is visible at (x, y); `no_lesion`: the reviewer saw none |
| x, y | the lesion's centre in the slice's own pixels (column, row from the top-left corner, as the file decodes); empty for `no_lesion` |
| radius | the lesion's extent in pixels; empty when only its centre was marked |
| reviewer | the reviewer's pseudonym (a keyed hash under the site's key, not the name) |
| marked_at | when the mark was made (ISO 8601, UTC) |
| mark_id | the mark's row in the results database (`review_marks.id`) |

Slices with a mark are the only slice-level labels here: every other slice carries its
patient's (study's) label only.
"""


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


def reviewer_pseudonym(settings: Settings, reviewer: str) -> str:
    """'rv-' + 12 hex of a keyed hash of the sign-in name: one reviewer's marks stay together
    in the data without naming them (the key stays in LUNG_HOME/secrets)."""
    key = site_key(settings.secrets_dir / PATIENT_KEY_FILE)
    return "rv-" + keyed_hash(f"reviewer:{reviewer}", key)[:12]


def study_annotations(
    settings: Settings,
    connection: Any,
    review: dict[str, Any],
    folder: str,
    exported: dict[int, str],
) -> list[Annotation]:
    """The counting marks of the study's exported slices (image id -> file name in `folder`),
    as of its newest mark (what the Study page showed then), as annotation rows."""
    if review["last_mark_id"] is None:
        return []
    rows = lesion_marks.counting_marks(connection, review["batch_id"], review["last_mark_id"])
    return [
        Annotation(
            path=f"{folder}/{exported[row['image_id']]}",
            label=review["label"],
            kind=row["kind"],
            x=row["x"],
            y=row["y"],
            radius=row["radius"],
            reviewer=reviewer_pseudonym(settings, row["reviewer"]),
            marked_at=row["created_at"].astimezone(UTC).isoformat(timespec="seconds"),
            mark_id=int(row["id"]),
        )
        for row in rows
        if row["image_id"] in exported
    ]


def document(data_dir: Path) -> None:
    """Add the reviewed studies' and marks' section to the dataset's README once."""
    readme = data_dir / "README.md"
    current = readme.read_text() if readme.exists() else "# Labelled CT slices\n"
    if README_SECTION not in current:
        readme.write_text(current.rstrip("\n") + "\n" + README_TEXT)


def export_reviews(settings: Settings, repo: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Export every not-yet-exported latest review into `repo`'s data/raw; return what changed.

    `{"exported": n_studies, "images": n, "marks": n, "data_version": hash, "skipped": [...]}`;
    `exported == 0` means the data version did not change.
    """
    data_dir, dvc_file = repo / "data" / "raw", repo / "data" / "raw.dvc"
    engine = db.get_engine(settings)
    with engine.connect() as connection:
        pending = [dict(row._mapping) for row in connection.execute(PENDING)]
    done: list[tuple[dict[str, Any], int, int]] = []
    skipped: list[str] = []
    marked_folders: list[str] = []  # the exported studies: their ANNOTATIONS.csv rows replaced
    annotations: list[Annotation] = []
    names = stored_names(settings)
    for review in pending:
        key = study_key(review["batch_id"], review["study"])
        with engine.connect() as connection:
            scored = list(connection.execute(SCORED_IMAGES, {"batch_id": review["batch_id"]}))
        places = study_folders(
            settings, review["study"], review["source_path"], key, review["archive_path"]
        )
        folders = [f for f in (names.locate(str(place)) for place in places) if f is not None]
        files = [(i, path, find_file(path, sha, folders, names)) for i, path, sha in scored]
        found = {i: (exported_as(path, file), file) for i, path, file in files if file}
        if review["label"] is None or not found:
            skipped.append(f"{review['study']}: no label or no scored files found")
            continue
        if len(found) < len(files):
            log.warning("%s: %d of %d files not found", key, len(files) - len(found), len(files))
        n_images = place_study(data_dir, key, review["label"], list(found.values()))
        folder = f"{CLASS_FOLDERS[review['label']]}/{REVIEWED}/{key}"
        with engine.connect() as connection:
            exported = {i: name for i, (name, _) in found.items()}
            marks = study_annotations(settings, connection, review, folder, exported)
        marked_folders.append(f"/{REVIEWED}/{key}/")
        annotations += marks
        done.append((review, n_images, len(marks)))
    if not done:
        return {
            "exported": 0,
            "images": 0,
            "marks": 0,
            "data_version": dvc.data_version(dvc_file),
            "skipped": skipped,
        }
    if annotations or (data_dir / lesion_marks.FILE).exists():
        lesion_marks.rewrite(data_dir, marked_folders, annotations)  # once for the run
    document(data_dir)
    dvc.dvc("add", "--quiet", "data/raw", repo=repo)
    dvc.dvc("push", "--quiet", "data/raw.dvc", repo=repo)
    version = dvc.data_version(dvc_file)
    with engine.begin() as connection:
        for review, n_images, n_marks in done:
            connection.execute(
                text("""
                    INSERT INTO feedback_exports (review_id, batch_id, label, n_images, data_version)
                    VALUES (:review_id, :batch_id, :label, :n, :version)
                    ON CONFLICT (review_id) DO NOTHING"""),
                {**review, "n": n_images, "version": version},
            )
            if review["last_mark_id"] is not None:
                connection.execute(
                    text("""
                        INSERT INTO feedback_mark_exports (batch_id, last_mark_id, n_marks,
                                                           data_version)
                        VALUES (:batch_id, :last_mark_id, :n, :version)
                        ON CONFLICT DO NOTHING"""),
                    {**review, "n": n_marks, "version": version},
                )
    log.info("exported %d reviewed studies as data version %s", len(done), version)
    return {
        "exported": len(done),
        "images": sum(n for _, n, _ in done),
        "marks": sum(n for _, _, n in done),
        "data_version": version,
        "skipped": skipped,
    }
