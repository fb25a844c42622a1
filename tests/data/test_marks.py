"""Training labels from lesion marks (issue 22 item 3): marks of train and validation slices
apply, test slices never change, 'no lesion visible' slices of a lesion class are left out (or
labelled normal), and the counts the training run logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lung_model.data import lesion_marks
from lung_model.data.lesion_marks import Annotation
from lung_model.data.marks import apply_marks, marked_split
from lung_model.data.split import Split, check
from lung_model.imaging.features import LesionPoint

M = "Malignant cases/reviewed/7-CT"
N = "Normal cases/reviewed/8-CT"


def _split() -> Split:
    paths = {
        f"{M}/a.jpg": ("train", "malignant"),
        f"{M}/b.jpg": ("train", "malignant"),
        f"{M}/c.jpg": ("train", "malignant"),
        f"{N}/a.jpg": ("val", "normal"),
        "Malignant cases/Malignant case (1).jpg": ("test", "malignant"),
    }
    return Split(
        data_version="v",
        method="group",
        part={p: part for p, (part, _) in paths.items()},
        group={p: p.rsplit("/", 1)[0] for p in paths},
        label={p: label for p, (_, label) in paths.items()},
        sha256={p: p for p in paths},
    )


def _mark(path: str, label: str, kind: str, mark_id: int) -> Annotation:
    point = (10.0, 20.0) if kind == "lesion" else (None, None)
    return Annotation(path, label, kind, *point, None, "rv-1", "2026-12-03T04:00:00+00:00", mark_id)


MARKS = [
    _mark(f"{M}/a.jpg", "malignant", "lesion", 1),
    _mark(f"{M}/b.jpg", "malignant", "no_lesion", 2),
    _mark(f"{N}/a.jpg", "normal", "no_lesion", 3),  # a normal slice without lesion: as it was
    _mark("Malignant cases/Malignant case (1).jpg", "malignant", "no_lesion", 4),  # test
]


def test_no_lesion_slices_are_left_out_of_training_and_test_is_untouched() -> None:
    split = _split()
    marked = apply_marks(split, MARKS)
    assert marked.treatment == "exclude"
    assert marked.split.paths("train") == [f"{M}/a.jpg", f"{M}/c.jpg"]
    assert marked.split.paths("test") == split.paths("test")
    assert marked.split.label == {p: split.label[p] for p in marked.split.part}
    check(marked.split)  # still a valid split
    assert marked.metrics() == {
        "marked_slices": 3,  # the test slice's mark is not used
        "marked_studies": 2,
        "marked_lesion_slices": 1,
        "marked_no_lesion_slices": 1,
    }
    assert len(split.part) == 5  # the split given is not changed
    # where the fit slices' lesions are, for the feature family's candidate choice
    assert marked.points == {f"{M}/a.jpg": LesionPoint(10.0, 20.0, None)}


def test_or_labelled_normal() -> None:
    marked = apply_marks(_split(), MARKS, "normal")
    assert marked.split.label[f"{M}/b.jpg"] == "normal"
    assert marked.split.label[f"{M}/a.jpg"] == "malignant"
    assert marked.split.label["Malignant cases/Malignant case (1).jpg"] == "malignant"
    assert len(marked.split.paths("train")) == 3


def test_a_dataset_without_annotations_trains_as_before(tmp_path: Path) -> None:
    split = _split()
    marked = marked_split(split, tmp_path)
    assert marked.split == split and marked.marked_slices == 0
    lesion_marks.rewrite(tmp_path, [], MARKS[:2])
    assert marked_split(split, tmp_path).marked_slices == 2


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"kind": "maybe"}, "kind"),
        ({"label": "cancer"}, "no class"),
        ({"x": ""}, "centre"),
        ({"x": "-3"}, "negative"),
        ({"radius": "4"}, "neither"),
    ],
)
def test_a_row_that_does_not_parse_is_named(tmp_path: Path, change: dict, why: str) -> None:
    row = {**_mark(f"{M}/a.jpg", "malignant", "lesion", 1).row(), **change}
    if change.get("radius"):
        row.update(kind="no_lesion", x="", y="")
    (tmp_path / lesion_marks.FILE).write_text(
        ",".join(lesion_marks.FIELDS) + "\n" + ",".join(row[f] for f in lesion_marks.FIELDS) + "\n"
    )
    marks, problems = lesion_marks.read(tmp_path)
    assert marks == [] and len(problems) == 1 and why in problems[0]
