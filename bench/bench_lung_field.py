"""Does the lung field the features read depend on the export? (docs/MODEL.md, run 14)

For every train and validation slice (never the test split), the lung masks found on every
step-th pixel of the slice (`lung_masks`, before run 14) and on block means of the same grid
(`lung_masks(averaged=True)`, `FeatureConfig.mask_averaged`): how many slices of each class
find no air inside the body as exported (the lung field then falls back to the body), and
how many slices' lung-field box moves (IoU < 0.8, boxes relative to the slice's size) when
the slice is changed by each of the invariance check's perturbations. Both masks are
computed in the same run, on the same perturbed slices (each made once). About 2 minutes.

Run: .venv/bin/python bench/bench_lung_field.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from model_selection_scores import perturbed_gray  # noqa: E402

from lung_model.data.audit import inspect  # noqa: E402
from lung_model.data.split import make_split  # noqa: E402
from lung_model.imaging.acquisition import PERTURBATIONS  # noqa: E402
from lung_model.imaging.lung_field import lung_masks  # noqa: E402
from lung_model.settings import CLASSES, get_settings  # noqa: E402

MOVED = 0.8  # box IoU below which the lung field counts as found elsewhere
COPIES = {"every step-th pixel": False, "block means": True}


def relative_box(gray: np.ndarray, averaged: bool) -> tuple[np.ndarray, bool]:
    """(top, bottom, left, right) of the lung field as shares of the slice, and whether any
    air was found inside the body."""
    masks = lung_masks(gray, averaged=averaged)
    top, bottom, left, right = masks.box()
    rows, cols = gray.shape
    return np.array([top / rows, bottom / rows, left / cols, right / cols]), bool(masks.air.any())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    high = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    wide = max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = high * wide
    return inter / ((a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter)


def main() -> int:
    data = get_settings().raw_data
    split = make_split(inspect(data))
    paths = sorted(p for p, part in split.part.items() if part in ("train", "val"))
    labels = np.array([CLASSES.index(split.label[p]) for p in paths])
    classes = ("normal", "benign", "malignant")

    def per_class(mask: np.ndarray) -> str:
        return " / ".join(str(int((mask & (labels == CLASSES.index(c))).sum())) for c in classes)

    def boxes(perturbation: str | None) -> dict[bool, list[tuple[np.ndarray, bool]]]:
        """Each slice's box under `perturbation` with each masks' copy (made once a slice)."""
        grays = (perturbed_gray(data, p, perturbation) for p in paths)
        found = [[relative_box(gray, averaged) for averaged in COPIES.values()] for gray in grays]
        return {averaged: [f[i] for f in found] for i, averaged in enumerate(COPIES.values())}

    header = ["masks' copy", "no air found as exported", *(f"box IoU < {MOVED}: {p}"
              for p in PERTURBATIONS)]  # fmt: skip
    exported = boxes(None)
    rows = {name: [name, per_class(np.array([not air for _, air in exported[averaged]]))]
            for name, averaged in COPIES.items()}  # fmt: skip
    for perturbation in PERTURBATIONS:
        changed = boxes(perturbation)
        for name, averaged in COPIES.items():
            pairs = zip(exported[averaged], changed[averaged], strict=True)
            rows[name].append(per_class(np.array([iou(a, b) < MOVED for (a, _), (b, _) in pairs])))
    counts = " / ".join(str(int((labels == CLASSES.index(c)).sum())) for c in classes)
    print(f"{len(paths)} train + validation slices ({' / '.join(classes)}: {counts})\n")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for cells in rows.values():
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
