"""The labelled dataset on disk: one folder per class, the class read from the folder name.

The public release spells benign 'Bengin' and mixes case ('Normal cases', 'Malignant cases');
`label_for_folder` accepts those and plain class names. Slices are numbered '(N)' within a
class folder; consecutive numbers are mostly neighbouring slices of one patient, which the
group split relies on (`lung_model.data.grouping`). Only image files are slices: MANIFEST.csv,
README.md and the reviewers' lesion marks in ANNOTATIONS.csv (`lung_model.data.lesion_marks`)
sit beside them and are read by their own readers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lung_model.settings import CLASSES

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".dcm"})
_NUMBER = re.compile(r"\((\d+)\)|(\d+)(?=\D*$)")


@dataclass(frozen=True)
class LabelledSlice:
    path: str  # relative to the dataset folder, POSIX separators
    label: str  # one of CLASSES
    number: int | None  # the slice number in its file name, when there is one


def label_for_folder(name: str) -> str | None:
    """'Bengin cases' -> 'benign', 'normal' -> 'normal'; None for a folder that is no class."""
    word = name.strip().lower().split()[0] if name.strip() else ""
    if word.startswith(("beng", "benign")):
        return "benign"
    if word.startswith("normal"):
        return "normal"
    if word.startswith("malig"):
        return "malignant"
    return None


def slice_number(file_name: str) -> int | None:
    match = _NUMBER.search(Path(file_name).stem)
    if not match:
        return None
    return int(match.group(1) or match.group(2))


def scan(data_dir: Path) -> tuple[list[LabelledSlice], list[str]]:
    """Every image file under a class folder, sorted by class, number and path; and the
    top-level folders that were skipped because their name is no class."""
    slices: list[LabelledSlice] = []
    skipped: list[str] = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        label = label_for_folder(folder.name)
        if label is None:
            skipped.append(folder.name)
            continue
        for file in folder.rglob("*"):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                relative = file.relative_to(data_dir).as_posix()
                slices.append(LabelledSlice(relative, label, slice_number(file.name)))
    slices.sort(key=lambda s: (CLASSES.index(s.label), s.number or 0, s.path))
    return slices, skipped
