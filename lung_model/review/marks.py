"""Lesion marks on slices: where a reviewer saw the lesion, or that a slice shows none.

A mark belongs to one slice (an `images` row): the lesion's centre in the slice's own pixel
coordinates (column x, row y from the top-left corner, as the scorer decodes the file) with an
optional radius, or 'no lesion visible'. Marks are append-only like reviews (sql/0005): a
correction is a new row, the newest row of a slice counts, and 'withdrawn' takes a mark back.
The feedback export writes the counting marks beside the images of the next data version.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw
from sqlalchemy import Engine, text

from lung_model.data.lesion_marks import COUNTING_SQL, counting_marks
from lung_model.imaging.features import LesionPoint
from lung_model.imaging.images import read_gray

Kind = Literal["lesion", "no_lesion", "withdrawn"]
KINDS: tuple[Kind, ...] = ("lesion", "no_lesion", "withdrawn")
MIN_DRAG = 4.0  # displayed pixels: a shorter drag is a click (a centre without extent)
MARK_COLOUR = (230, 30, 30)

_INSERT = text("""
INSERT INTO review_marks (image_id, reviewer, kind, x, y, radius, model_name, model_version)
VALUES (:image_id, :reviewer, :kind, :x, :y, :radius, :model_name, :model_version)
RETURNING id
""")
_SIZE = text("SELECT width, height FROM images WHERE id = :image_id")


def add_mark(
    engine: Engine,
    *,
    image_id: int,
    reviewer: str,
    kind: Kind,
    x: float | None = None,
    y: float | None = None,
    radius: float | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> int:
    """Append one mark of a slice; a lesion needs its centre inside the slice."""
    if not reviewer:
        raise ValueError("a mark needs a signed-in reviewer")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    if kind != "lesion":
        x = y = radius = None
    elif x is None or y is None:
        raise ValueError("a lesion mark needs its centre")
    params = {
        "image_id": image_id,
        "reviewer": reviewer,
        "kind": kind,
        "x": x,
        "y": y,
        "radius": radius,
        "model_name": model_name,
        "model_version": model_version,
    }
    with engine.begin() as connection:
        size = connection.execute(_SIZE, {"image_id": image_id}).first()
        if size is None:
            raise ValueError(f"no slice with id {image_id}")
        width, height = size
        known = x is not None and y is not None and width and height
        if known and not (0 <= x < width and 0 <= y < height):  # type: ignore[operator]
            raise ValueError(f"({x}, {y}) lies outside the {width}x{height} slice")
        return int(connection.execute(_INSERT, params).scalar_one())


def current_marks(engine: Engine, batch_id: int) -> dict[int, dict[str, Any]]:
    """The mark that counts for each marked slice of the study (image id -> its newest row,
    `lesion_marks.counting_marks`); slices whose newest mark was withdrawn are left out."""
    with engine.connect() as connection:
        return {row["image_id"]: row for row in counting_marks(connection, batch_id)}


def click_to_mark(
    value: dict[str, Any], width: int, height: int
) -> tuple[float, float, float | None]:
    """A click or a drag on the displayed slice (streamlit-image-coordinates' value: `x, y` for
    a click; `x1, y1` where the button went down and `x2, y2` where it came up for a drag; the
    displayed `width, height`) as the slice's centre and radius in its own pixels."""
    scale_x, scale_y = width / value["width"], height / value["height"]
    x1 = float(value["x1"] if "x1" in value else value["x"])
    y1 = float(value["y1"] if "y1" in value else value["y"])
    x2, y2 = float(value.get("x2", x1)), float(value.get("y2", y1))
    drag = math.hypot(x2 - x1, y2 - y1)
    x = min(max(x1 * scale_x, 0.0), width - 1.0)
    y = min(max(y1 * scale_y, 0.0), height - 1.0)
    radius = drag * (scale_x + scale_y) / 2 if drag >= MIN_DRAG else None
    return round(x, 1), round(y, 1), None if radius is None else round(radius, 1)


def marked_slice(path: Path, mark: dict[str, Any] | None) -> Image.Image:
    """The slice at full size, as the scorer decodes it, with its counting mark drawn: a red
    ring at the lesion's extent (or a small one round its centre) and a cross at the centre."""
    gray = read_gray(path).gray
    image = Image.fromarray((gray * 255).astype(np.uint8)).convert("RGB")
    if mark is None or mark["kind"] != "lesion":
        return image
    draw_mark(image, float(mark["x"]), float(mark["y"]), mark["radius"])
    return image


def draw_mark(
    image: Image.Image,
    x: float,
    y: float,
    radius: float | None,
    colour: tuple[int, int, int] = MARK_COLOUR,
) -> None:
    """A lesion mark in place on `image` (in its pixels): a ring at the extent (or, round a
    centre without one, at `LesionPoint.reach`) and a cross at the centre."""
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    ring = LesionPoint(x, y, float(radius) if radius else None).reach(image.size)
    width = max(2, side // 256)
    draw.ellipse((x - ring, y - ring, x + ring, y + ring), outline=colour, width=width)
    arm = side / 80
    draw.line((x - arm, y, x + arm, y), fill=colour, width=width)
    draw.line((x, y - arm, x, y + arm), fill=colour, width=width)


_FOR_TRAINING = text(f"""
WITH counting AS ({COUNTING_SQL}), usable AS (
    SELECT c.batch_id FROM counting c WHERE c.kind <> 'withdrawn' AND EXISTS (
        SELECT 1 FROM reviews v WHERE v.batch_id = c.batch_id AND v.image_id IS NULL)
), exported AS (
    SELECT DISTINCT ON (batch_id) batch_id, n_marks
    FROM feedback_mark_exports ORDER BY batch_id, last_mark_id DESC
)
SELECT
    (SELECT count(*) FROM usable) AS slices,
    (SELECT count(DISTINCT batch_id) FROM usable) AS studies,
    (SELECT coalesce(sum(n_marks), 0) FROM exported) AS exported_slices,
    (SELECT count(*) FROM exported WHERE n_marks > 0) AS exported_studies
""")  # noqa: S608 - fixed SQL, bound values


def marks_for_training(engine: Engine) -> dict[str, int]:
    """Marked slices and studies the next training can use: the counting marks of reviewed
    studies (`slices`, `studies`), and of those what lung_feedback has already exported into
    the data (`exported_slices`, `exported_studies`)."""
    with engine.connect() as connection:
        row = connection.execute(_FOR_TRAINING, {"batch_id": None, "up_to": None}).mappings().one()
    return {key: int(value) for key, value in row.items()}
