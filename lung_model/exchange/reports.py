"""What a study's report says, version by version, read from the results database and the
archived DICOM headers.

A report version is the model's result on a study (`model:<name>:<version>`, status
preliminary) or the clinician's latest study review (`review:<id>`, status final, the
reviewer's label). Only studies that came in as DICOM get one: scored, archived, with DICOM
slices, whose Study Instance UID (and patient and study attributes, which the SR repeats so
the PACS files it with its study) are read from the archived files' headers, never stored in
the database. The slices that drove the call are the ones most probable for the reported
class under the model (up to `DRIVING_SLICES`).
A batch that scored its study again whole, after more of it arrived (`scoring.grown`), has
the report version `model:<name>:<version>@batch-<id>`, so its SR gets identifiers of its own
and names the SRs sent for the batches it superseded as predecessors (`replaces`); those
batches' reports are not sent any more.

A preliminary report carries the cautions the Study page shows beside the result
(`cautions`): the model never passed the safety gate (promoted by override or rolled back to
such a version), the scan is unlike the ones the model learned from, the calls change under
another export, the model is uncertain. Before, the SR and DiagnosticReport of an overridden
model's result read like any other in the PACS and the EHR, where no red banner is seen. A
final report says the reviewer's label, given with those cautions in view: it carries none.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from lung_model.platform.names import StoredNames
from lung_model.review.standing import Standing, version_standing
from lung_model.scoring.guard import UNLIKE_TRAINING, unlike_training
from lung_model.scoring.sensitivity import described
from lung_model.settings import CLASSES

DRIVING_SLICES = 3
GATE_NOT_PASSED = "gate-not-passed"  # the caution of a model the safety gate never passed
log = logging.getLogger(__name__)

# Every report version of the studies that came in as DICOM (of one batch when :batch is set):
# the model's results, and every study review with `latest` marking the one a report says.
_VERSIONS = """
WITH dicom_batches AS (
    SELECT b.id, CASE WHEN EXISTS (SELECT 1 FROM scan_batches s WHERE s.superseded_by = b.id)
                      THEN '@batch-' || b.id ELSE '' END AS scored_again
    FROM scan_batches b
    WHERE b.status = 'done' AND b.archive_path IS NOT NULL
      AND (CAST(:batch AS bigint) IS NULL OR b.id = :batch)
      AND EXISTS (SELECT 1 FROM images i
                  WHERE i.batch_id = b.id AND i.status = 'scored' AND i.format = 'dicom')
), results AS (
    SELECT r.*, 'model:' || r.model_name || ':' || r.model_version || d.scored_again AS key
    FROM study_results r JOIN dicom_batches d ON d.id = r.batch_id
), study_reviews AS (
    SELECT v.* FROM reviews v JOIN dicom_batches d ON d.id = v.batch_id WHERE v.image_id IS NULL
), versions AS (
    SELECT r.batch_id, r.key AS report, 'preliminary' AS report_status, r.id AS result_id,
           NULL::bigint AS review_id, true AS latest, r.key AS preliminary
    FROM results r
    UNION ALL
    SELECT v.batch_id, 'review:' || v.id, 'final', r.id, v.id,
           NOT EXISTS (SELECT 1 FROM study_reviews w WHERE w.batch_id = v.batch_id
                       AND (w.created_at, w.id) > (v.created_at, v.id)),
           r.key
    FROM study_reviews v
    JOIN LATERAL (
        SELECT sr.id, sr.key FROM results sr WHERE sr.batch_id = v.batch_id
        ORDER BY (sr.model_name = v.model_name AND sr.model_version = v.model_version) DESC,
                 sr.created_at DESC, sr.id DESC LIMIT 1
    ) r ON true
)
"""
_CANDIDATES = text(
    _VERSIONS  # noqa: S608 - fixed SQL, bound values
    + """
SELECT c.batch_id, c.report, c.report_status, c.result_id, c.review_id, c.preliminary
FROM versions c
WHERE c.latest
  AND NOT EXISTS (SELECT 1 FROM scan_batches s WHERE s.id = c.batch_id
                  AND s.superseded_by IS NOT NULL)
  AND (SELECT count(*) FROM result_deliveries x
       WHERE x.batch_id = c.batch_id AND x.report = c.report
         AND x.channel || ' ' || x.destination = ANY(:keys)) < :wanted
ORDER BY c.batch_id, c.report
"""
)
_VERSION = text(
    _VERSIONS  # noqa: S608 - fixed SQL, bound values
    + """
SELECT batch_id, report, report_status, result_id, review_id, preliminary FROM versions
WHERE report = :report
"""
)

_RESULT = text("""
SELECT b.archive_path, r.model_name, r.model_version, r.data_version, r.predicted_class,
       r.n_slices, r.max_p_malignant, r.created_at, r.needs_review, r.acquisition_outside,
       r.acquisition_sensitivity,
       avg(p.p_normal) AS p_normal, avg(p.p_benign) AS p_benign, avg(p.p_malignant) AS p_malignant
FROM study_results r
JOIN scan_batches b ON b.id = r.batch_id
JOIN images i ON i.batch_id = r.batch_id AND i.status = 'scored'
JOIN predictions p ON p.image_sha256 = i.sha256
    AND p.model_name = r.model_name AND p.model_version = r.model_version
WHERE r.id = :result_id
GROUP BY b.id, r.id
""")

_DRIVING = text("""
SELECT i.path FROM images i
JOIN predictions p ON p.image_sha256 = i.sha256
    AND p.model_name = :name AND p.model_version = :version
WHERE i.batch_id = :batch AND i.status = 'scored' AND i.format = 'dicom'
ORDER BY CASE :label WHEN 'malignant' THEN p.p_malignant WHEN 'benign' THEN p.p_benign
         ELSE p.p_normal END DESC, i.id
LIMIT :limit
""")

_REPLACED = text("""
SELECT DISTINCT x.report FROM result_deliveries x
JOIN scan_batches s ON s.id = x.batch_id
WHERE s.superseded_by = :batch AND x.report LIKE 'model:%' AND x.status = 'sent'
  AND x.channel IN ('dicom', 'stow-rs')
ORDER BY x.report
""")

_REVIEW = text("""
SELECT reviewer, decision, corrected_label, created_at FROM reviews WHERE id = :id
""")


@dataclass(frozen=True)
class Candidate:
    """A report version of a study that came in as DICOM: the model's result or a review."""

    batch_id: int
    report: str
    report_status: str  # preliminary | final
    result_id: int
    review_id: int | None
    preliminary: str  # the key of the model's report of this result, which a review amends


@dataclass(frozen=True)
class Caution:
    """A reason to read a result with care: `code` and `meaning` (at most 64 characters) are
    the SR's coded value, `words` the sentence the DiagnosticReport's conclusion carries."""

    code: str
    meaning: str
    words: str


def cautions(
    standing: Standing,
    needs_review: bool,
    outside: list[dict[str, Any]] | None,
    sensitivity: dict[str, Any] | None,
) -> list[Caution]:
    """What the Study page warns of beside a result, for the report that leaves the system."""
    found = []
    if warning := standing.warning("The model that scored this study"):
        meaning = "Safety gate not passed: not for clinical use"
        found.append(Caution(GATE_NOT_PASSED, meaning, warning))
    if unlike := unlike_training(outside):
        words = f"This study is {UNLIKE_TRAINING}: " + "; ".join(unlike) + "."
        found.append(Caution("unlike-training", "Unlike the scans the model learned from", words))
    if sensitivity and sensitivity.get("changed"):
        words = f"The model's {described(sensitivity)}: its verdict may hang on the export."
        found.append(Caution("export-sensitive", "Call changes under another export", words))
    if needs_review:
        words = "The model is uncertain about this study."
        found.append(Caution("uncertain", "Model uncertain", words))
    return found


@dataclass
class StudyReport:
    report: str
    report_status: str  # preliminary | final
    archive_path: str
    model_name: str
    model_version: str
    data_version: str
    predicted_class: str  # the model's verdict
    label: str  # what the report says: the verdict, or the reviewer's label
    probabilities: dict[str, float]  # mean over the study's scored slices, CLASSES order
    max_p_malignant: float
    n_slices: int
    scored_at: datetime
    driving: list[str]  # stored image paths of the slices that drove the call
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    rule: str | None = None  # the study rule in words (from the model's metadata)
    preliminary: str = ""  # the model's report a final one amends (`Candidate.preliminary`)
    # model reports sent as SRs for the batches this one superseded (`scoring.grown`)
    replaces: list[str] = field(default_factory=list)
    cautions: list[Caution] = field(default_factory=list)


def candidates(engine: Engine, channels: list[tuple[str, str]]) -> list[Candidate]:
    """Report versions lacking a delivery row on one of `channels` ((channel, destination))."""
    keys = [f"{channel} {destination}" for channel, destination in channels]
    params = {"keys": keys, "wanted": len(keys), "batch": None}
    with engine.connect() as connection:
        rows = connection.execute(_CANDIDATES, params).all()
    return [Candidate(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5]) for r in rows]


def candidate(engine: Engine, batch_id: int, report: str) -> Candidate:
    """One report version by its key (a delivery planned in an earlier run), latest or not."""
    with engine.connect() as connection:
        r = connection.execute(_VERSION, {"batch": batch_id, "report": report}).one()
    return Candidate(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5])


def load_report(engine: Engine, candidate: Candidate) -> StudyReport:
    with engine.connect() as connection:
        row = connection.execute(_RESULT, {"result_id": candidate.result_id}).mappings().one()
        review = None
        if candidate.review_id is not None:
            review = connection.execute(_REVIEW, {"id": candidate.review_id}).mappings().one()
        label = str(row["predicted_class"])
        if review is not None and review["decision"] == "correct":
            label = str(review["corrected_label"])
        driving = connection.execute(
            _DRIVING,
            {
                "batch": candidate.batch_id,
                "name": row["model_name"],
                "version": row["model_version"],
                "label": str(row["predicted_class"]),
                "limit": DRIVING_SLICES,
            },
        ).scalars()
        driving_paths = [str(path) for path in driving]
        replaces = []  # a final report amends its own preliminary one, `preliminary`
        if review is None:
            replaced = connection.execute(_REPLACED, {"batch": candidate.batch_id}).scalars()
            replaces = [str(report) for report in replaced]
    caution = []  # a final report is the reviewer's label, given with them in view
    if review is None:
        standing = version_standing(engine, str(row["model_name"]), str(row["model_version"]))
        outside, sensitivity = row["acquisition_outside"], row["acquisition_sensitivity"]
        caution = cautions(standing, bool(row["needs_review"]), outside, sensitivity)
    return StudyReport(
        report=candidate.report,
        report_status=candidate.report_status,
        archive_path=str(row["archive_path"]),
        model_name=str(row["model_name"]),
        model_version=str(row["model_version"]),
        data_version=str(row["data_version"]),
        predicted_class=str(row["predicted_class"]),
        label=label,
        probabilities={name: float(row[f"p_{name}"]) for name in CLASSES},
        max_p_malignant=float(row["max_p_malignant"]),
        n_slices=int(row["n_slices"]),
        scored_at=row["created_at"],
        driving=driving_paths,
        reviewer=review["reviewer"] if review else None,
        reviewed_at=review["created_at"] if review else None,
        cautions=caution,
        preliminary=candidate.preliminary,
        replaces=replaces,
    )


@dataclass(frozen=True)
class Evidence:
    """The archived DICOM headers of a study (no pixel data), by stored image path."""

    by_path: dict[str, Any]

    @property
    def datasets(self) -> list[Any]:
        return list(self.by_path.values())

    @property
    def study_uid(self) -> str:
        uids = {str(ds.StudyInstanceUID) for ds in self.datasets if "StudyInstanceUID" in ds}
        if len(uids) != 1:
            raise ValueError(f"the study's DICOM files name {len(uids)} Study Instance UIDs")
        return uids.pop()


def read_evidence(archive_path: str, names: StoredNames, stored_paths: set[str]) -> Evidence:
    """The headers of the archived DICOM files among `stored_paths` (the scored slices)."""
    import pydicom

    folder = names.locate(archive_path)
    if folder is None:
        raise FileNotFoundError(f"the archived study {archive_path} is not on disk")
    found: dict[str, Any] = {}
    for parent, _, files in os.walk(folder):
        for file in sorted(files):
            path = Path(parent) / file
            stored = names.name(path.relative_to(folder).as_posix())
            if stored not in stored_paths:
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if "SOPInstanceUID" in ds and "StudyInstanceUID" in ds:
                found[stored] = ds
    if not found:
        raise FileNotFoundError(f"no DICOM slice of {archive_path} is on disk")
    return Evidence(found)


def scored_dicom_paths(engine: Engine, batch_id: int) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT path FROM images WHERE batch_id = :batch AND status = 'scored'"
                " AND format = 'dicom'"
            ),
            {"batch": batch_id},
        ).scalars()
        return {str(path) for path in rows}
