"""What the nuisance-only baseline reads in each feature configuration's inputs (docs/MODEL.md,
run 13): its malignant ROC-AUC over the CV bench's grouped folds (train and validation
groups; never the test split) on

- the slice as exported (all five measurements; the matrix alone),
- the lung-field crop the features read (`seen_crop`): all five measurements, as the CV bench
  and training report `nuisance_auc`; the export's (`nuisance_tables`: the crop's noise and
  window, the slice's matrix), `nuisance_export_auc`; the noise and window alone; the crop's
  shape alone (its rows and columns: the lung field's shape),

and, on the 512 x 512 slices only (where the matrix cannot tell anything), the crop's rows
alone, which is what says the crop's shape is the lung field's rather than the export's.
Then the noise one scale up, which none of the five measures (`coarse_noise_level`: the
noise of the crop's 2 x 2 block means), alone and with the export's measurements, and how
it follows the raw slice's noise within each class (the export, where it does; anatomy is
in it too).
Measurements are the CV bench's cached ones (var/bench/acquisition/), so a configuration it
has run costs nothing here; a new one, about 10 s of crops.

Run: .venv/bin/python bench/bench_nuisance.py [--configs features-hb-aug2w,...] [--folds 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from bench_model_selection import FEATURE_CONFIGS, folds  # noqa: E402
from model_selection_scores import acquisition_vectors, coarse_vectors  # noqa: E402

from lung_model.data.audit import inspect  # noqa: E402
from lung_model.data.split import make_split  # noqa: E402
from lung_model.imaging.acquisition import MEASUREMENTS  # noqa: E402
from lung_model.settings import get_settings  # noqa: E402
from lung_model.training.invariance import (  # noqa: E402
    MALIGNANT,
    MATRIX,
    nuisance_probabilities,
    nuisance_tables,
)

DEFAULT_CONFIGS = ("features-h-aug2w,features-hb-aug2w,features-hcrop-aug2w,"
                   "features-hcropb-aug2w,features-hcropb8-aug2w")  # fmt: skip
NOISE_AND_WINDOW = [MEASUREMENTS.index(m) for m in ("noise", "window_width", "window_level")]


def grouped_auc(table: np.ndarray, positive: np.ndarray, fold_rows: list) -> str:
    """Mean ± sd over folds of the baseline's held-out malignant ROC-AUC on `table`."""
    labels = np.where(positive, MALIGNANT, 0)
    aucs = [
        roc_auc_score(positive[out], nuisance_probabilities(table[fit], labels[fit], table[out]))
        for fit, out in fold_rows
    ]
    return f"{np.mean(aucs):.3f} ± {np.std(aucs):.3f}"


def univariate_auc(values: np.ndarray, positive: np.ndarray) -> float:
    """How well one measurement alone separates, either way round."""
    auc = roc_auc_score(positive, values)
    return float(max(auc, 1 - auc))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    data = get_settings().raw_data
    split = make_split(inspect(data))
    paths = sorted(p for p, part in split.part.items() if part in ("train", "val"))
    row = {p: i for i, p in enumerate(paths)}
    fold_rows = [
        ([row[p] for p in fit], [row[p] for p in out]) for fit, out in folds(split, args.folds)
    ]
    labels = np.array([split.label[p] for p in paths])
    positive = labels == "malignant"
    raw_vectors = acquisition_vectors(split, paths, data, None)
    raw = np.stack([raw_vectors[p] for p in paths])
    square = (raw[:, MATRIX] == 512).all(axis=1)
    print(f"\nThe slice as exported: all five {grouped_auc(raw, positive, fold_rows)}, "
          f"the matrix alone {grouped_auc(raw[:, MATRIX], positive, fold_rows)}")  # fmt: skip
    head = ["config", "crop: all five (nuisance_auc)", "export: crop noise + window, slice matrix",
            "crop noise + window", "crop shape", "crop rows, 512 x 512 slices only",
            "crop noise one scale up", "export + noise one scale up",
            "r(raw noise, noise one scale up) normal / benign / malignant"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in args.configs.split(","):
        features = FEATURE_CONFIGS[name][0].features
        seen = (split, paths, data, features.harmonise, features)
        crop, coarse = (
            np.stack([by_path[p] for p in paths])
            for by_path in (acquisition_vectors(*seen), coarse_vectors(*seen))
        )
        tables = nuisance_tables(crop, raw, coarse)
        rows = crop[square, MEASUREMENTS.index("rows")]
        cells = [
            grouped_auc(table, positive, fold_rows)
            for table in (tables["nuisance"], tables["nuisance_export"],
                          crop[:, NOISE_AND_WINDOW], crop[:, MATRIX])
        ]  # fmt: skip
        cells.append(f"{univariate_auc(rows, positive[square]):.3f}")
        cells += [grouped_auc(coarse, positive, fold_rows),
                  grouped_auc(tables["nuisance_coarse"], positive, fold_rows)]  # fmt: skip
        cells.append(" / ".join(
            f"{np.corrcoef(raw[labels == c, 0], coarse[labels == c, 0])[0, 1]:.2f}"
            for c in ("normal", "benign", "malignant")
        ))  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nNuisance-only baseline, malignant ROC-AUC, {args.folds} grouped folds "
          f"({len(paths)} slices, {square.sum()} of them 512 x 512)")  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
