"""ANNOTATIONS.csv: clinicians' lesion marks, beside the images of the labelled dataset.

One row per counting mark of a reviewed slice (`counting_marks`: the newest mark of that
slice, unless it is a withdrawal; marks are made in `lung_model.review.marks`), written by the
feedback export next to MANIFEST.csv:

    path        the slice, relative to the dataset folder (as in MANIFEST.csv)
    label       the class of the study the slice belongs to (its folder's class)
    kind        'lesion' (the lesion is visible at x, y) or 'no_lesion' (none is visible)
    x, y        the lesion's centre in the slice's own pixels (column, row from the top-left
                corner, as the file decodes); empty for 'no_lesion'
    radius      the lesion's extent in pixels; empty when only the centre was marked
    reviewer    the reviewer's pseudonym (a keyed hash, never the sign-in name)
    marked_at   when the mark was made (ISO 8601, UTC)
    mark_id     the mark's row id in the results database (review_marks.id)

The dataset reader takes images by suffix, so this file is never read as one; the audit
checks every row against the images it found.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from lung_model.settings import CLASSES

FILE = "ANNOTATIONS.csv"
FIELDS = ("path", "label", "kind", "x", "y", "radius", "reviewer", "marked_at", "mark_id")
KINDS = ("lesion", "no_lesion")

# The newest mark of each marked slice, of one batch (all when :batch_id is NULL), among the
# marks up to id :up_to (all when NULL): marks are append-only, the newest counts.
COUNTING_SQL = """
SELECT DISTINCT ON (m.image_id) m.id, m.image_id, i.batch_id, i.path, m.reviewer, m.kind,
       m.x, m.y, m.radius, m.model_name, m.model_version, m.created_at
FROM review_marks m JOIN images i ON i.id = m.image_id
WHERE (CAST(:batch_id AS bigint) IS NULL OR i.batch_id = :batch_id)
  AND (CAST(:up_to AS bigint) IS NULL OR m.id <= :up_to)
ORDER BY m.image_id, m.created_at DESC, m.id DESC
"""
_COUNTING = text(COUNTING_SQL)


def counting_marks(
    connection: Connection, batch_id: int, up_to: int | None = None
) -> list[dict[str, Any]]:
    """The mark that counts for each marked slice of a batch (as of mark id `up_to`, when
    given): its newest; a slice whose newest mark is a withdrawal has none."""
    rows = connection.execute(_COUNTING, {"batch_id": batch_id, "up_to": up_to}).mappings()
    return [dict(row) for row in rows if row["kind"] != "withdrawn"]


@dataclass(frozen=True)
class Annotation:
    path: str
    label: str
    kind: str
    x: float | None
    y: float | None
    radius: float | None
    reviewer: str
    marked_at: str
    mark_id: int

    def row(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


def parse(row: dict[str, str]) -> Annotation:
    """One CSV row as an Annotation; ValueError naming what is wrong."""
    missing = [name for name in FIELDS if name not in row]
    if missing:
        raise ValueError(f"missing columns {missing}")
    mark = Annotation(
        path=row["path"],
        label=row["label"],
        kind=row["kind"],
        x=_number(row["x"]),
        y=_number(row["y"]),
        radius=_number(row["radius"]),
        reviewer=row["reviewer"],
        marked_at=row["marked_at"],
        mark_id=int(row["mark_id"]),
    )
    if mark.label not in CLASSES:
        raise ValueError(f"label {mark.label!r} is no class")
    if mark.kind not in KINDS:
        raise ValueError(f"kind {mark.kind!r} is not one of {KINDS}")
    has_point = mark.x is not None and mark.y is not None
    if (mark.kind == "lesion") != has_point or (mark.kind != "lesion" and mark.radius):
        raise ValueError("a lesion has a centre (and maybe a radius); 'no_lesion' has neither")
    if any(v is not None and v < 0 for v in (mark.x, mark.y, mark.radius)):
        raise ValueError("coordinates and radius cannot be negative")
    return mark


def read(data_dir: Path) -> tuple[list[Annotation], list[str]]:
    """The dataset's annotations (none when it has no ANNOTATIONS.csv) and the rows that do
    not parse, as 'line N: why'."""
    file = data_dir / FILE
    if not file.exists():
        return [], []
    marks: list[Annotation] = []
    problems: list[str] = []
    with file.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                marks.append(parse(row))
            except (ValueError, TypeError) as error:
                problems.append(f"{FILE} line {line}: {error}")
    return marks, problems


def rewrite(data_dir: Path, drops: list[str], rows: list[Annotation]) -> None:
    """Replace the rows whose path contains one of `drops` (studies' folders) by `rows`."""
    kept, _ = read(data_dir)
    kept = [mark for mark in kept if not any(drop in f"/{mark.path}" for drop in drops)]
    with (data_dir / FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(mark.row() for mark in sorted([*kept, *rows], key=lambda m: m.path))


def problems(
    marks: list[Annotation], labels: dict[str, str], sizes: dict[str, tuple[int, int]]
) -> list[str]:
    """What is wrong with the annotations given the images found (path -> class, size): a
    mark of a missing image, of another class than its image's, outside its image, or two
    marks of one slice."""
    found: list[str] = []
    seen: set[str] = set()
    for mark in marks:
        where = f"{FILE}: {mark.path}"
        if mark.path not in labels:
            found.append(f"{where}: no such image")
            continue
        if labels[mark.path] != mark.label:
            found.append(f"{where}: label {mark.label} but the image is {labels[mark.path]}")
        width, height = sizes.get(mark.path, (0, 0))
        point = (mark.x, mark.y) if mark.x is not None and mark.y is not None else None
        if point and width and height and not (point[0] < width and point[1] < height):
            found.append(f"{where}: ({mark.x}, {mark.y}) outside {width}x{height}")
        if mark.path in seen:
            found.append(f"{where}: marked twice")
        seen.add(mark.path)
    return found
