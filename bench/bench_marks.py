"""Lesion marks in the grouped CV bench (issue 22 item 3): proof that marks flow into training.

The same folds as `bench_model_selection.py` (its `folds` and `hold_back`: class-stratified
folds of whole pseudo-patient groups over the train and validation parts; the fixed test
split is never loaded), the same feature family (`features` = `FeatureModelConfig()`, fitted
and scored by `model_selection_scores.py`'s `fit_features` and `score_folds`), three ways:

- `features-nomarks`: no marks (the baseline, refitted here so that both sides run the same
  code on the same machine);
- `features-marks-exclude`: simulated marks applied by the product's `apply_marks` with the
  default treatment: slices marked 'no lesion visible' are left out of training;
- `features-marks-normal`: the same marks, those slices labelled normal instead.

Simulated marks (no reviewer has marked this data): a stand-in reviewer marks every benign and
malignant slice of the fold's inner-train and inner-validation groups, never a held-out one.
It calls a slice lesion-free when the largest dense candidate the feature family finds in the
lung field (`nodule_candidates`, its share of the lung field) is no larger than the median
largest candidate of the fold's own normal training slices; otherwise it marks a lesion at
that candidate's centre. The stand-in sees what the model's own features see, so this run shows
that marks change what the model is trained on and how far that moves the held-out scores; it
is not evidence that real marks would help clinically. Held-out slices keep their patient
labels, so every run is scored on the same targets.

Results go to var/bench/marks.json; `--show` prints the saved tables.
`bench/bench_marks.py [--folds 5]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_model_selection import folds, hold_back
from model_selection_scores import feature_part, fit_features, score_folds, slice_table, study_table

from lung_model.data.audit import inspect
from lung_model.data.lesion_marks import Annotation
from lung_model.data.marks import Treatment, apply_marks
from lung_model.data.split import Split, make_split
from lung_model.imaging.features import nodule_candidates
from lung_model.imaging.images import read_gray
from lung_model.settings import get_settings
from lung_model.training.feature_model import FeatureModelConfig

RUNS: dict[str, Treatment | None] = {
    "features-nomarks": None,
    "features-marks-exclude": "exclude",
    "features-marks-normal": "normal",
}


def largest_candidates(split: Split, paths: list[str], data: Path) -> dict[str, np.ndarray]:
    """(share, centre x, centre y) of each slice's largest dense candidate ((0, nan, nan)
    without one), cached in var/bench/ per data version."""
    config = FeatureModelConfig().features
    file = get_settings().home / "bench" / f"marks-candidates-{split.data_version}.npz"
    cached: dict[str, np.ndarray] = {}
    if file.exists():
        saved = np.load(file)
        cached = dict(zip(saved["paths"].tolist(), saved["x"], strict=True))
    missing = [p for p in paths if p not in cached]
    for p in missing:
        found = nodule_candidates(read_gray(data / p).gray, config)
        if found:
            top, bottom, left, right = found[0].box
            cached[p] = np.array([found[0].share, (left + right) / 2, (top + bottom) / 2])
        else:
            cached[p] = np.array([0.0, np.nan, np.nan])
    if missing:
        file.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(cached)
        np.savez(file, paths=np.array(names), x=np.stack([cached[p] for p in names]))
    return cached


def simulated_marks(split: Split, fit_paths: list[str], largest: dict) -> list[Annotation]:
    """The stand-in reviewer's marks of the fold's fit slices (see the module)."""
    cut = statistics.median(largest[p][0] for p in fit_paths if split.label[p] == "normal")
    marks = []
    for index, path in enumerate(sorted(fit_paths)):
        if split.label[path] == "normal":
            continue
        share, x, y = largest[path]
        lesion = share > cut
        marks.append(
            Annotation(path, split.label[path], "lesion" if lesion else "no_lesion",
                       float(x) if lesion else None, float(y) if lesion else None, None,
                       "simulated", "", index)
        )  # fmt: skip
    return marks


def run(name: str, split: Split, data: Path, k: int) -> dict:
    treatment = RUNS[name]
    config = FeatureModelConfig()
    started = time.monotonic()
    saved: dict[str, np.ndarray] = {}
    seconds, counts = [], []
    for index, (train_paths, out_paths) in enumerate(folds(split, k)):
        inner_train, inner_val = hold_back(split, train_paths, seed=index)
        fitted_on = split
        if treatment is not None:
            largest = largest_candidates(split, train_paths, data)
            fold = replace(split, part={**{p: "train" for p in inner_train},
                                        **{p: "val" for p in inner_val}})  # fmt: skip
            marked = apply_marks(fold, simulated_marks(split, train_paths, largest), treatment)
            fitted_on = marked.split
            inner_train, inner_val = fitted_on.paths("train"), fitted_on.paths("val")
            counts.append(marked.metrics())
        train, val = (
            feature_part(fitted_on, p, data, config.features) for p in (inner_train, inner_val)
        )
        out = feature_part(split, out_paths, data, config.features)  # patient labels
        predict, threshold, fit_seconds, (rules_part, rules_p) = fit_features(config, train, val)
        saved.update({f"fold{index}_val_p": rules_p, f"fold{index}_val_y": rules_part.y,
                      f"fold{index}_val_g": rules_part.groups, f"fold{index}_out_p": predict(out.x),
                      f"fold{index}_out_y": out.y, f"fold{index}_out_g": out.groups,
                      f"fold{index}_threshold": np.array(np.nan if threshold is None else threshold)})  # fmt: skip
        seconds.append(fit_seconds)
        print(f"{name} fold {index}: {counts[-1] if counts else 'no marks'}", flush=True)
    return {"name": name, "treatment": treatment, "marks_per_fold": counts,
            "minutes": (time.monotonic() - started) / 60, **score_folds(saved, k, seconds)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    out = get_settings().home / "bench" / "marks.json"
    results = json.loads(out.read_text()) if out.exists() else []
    if not args.show:
        data = get_settings().raw_data
        split = make_split(inspect(data))
        for name in args.runs.split(","):
            result = run(name, split, data, args.folds)
            results = [r for r in results if r["name"] != name] + [result]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1, default=float))
    print(slice_table(results))
    print(study_table(results))
    for r in results:
        if r["marks_per_fold"]:
            counts = r["marks_per_fold"]
            mean = {key: round(float(np.mean([c[key] for c in counts])), 1) for key in counts[0]}
            print(f"{r['name']}: simulated marks per fold (mean) {mean}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
