"""Lesion marks in the grouped CV bench (issue 22 item 3): proof that marks flow into training.

The same folds as `bench_model_selection.py` (its `folds` and `hold_back`: class-stratified
folds of whole pseudo-patient groups over the train and validation parts; the fixed test
split is never loaded), the same feature family (`features` = `FeatureModelConfig()`, fitted
and scored by `model_selection_scores.py`'s `fit_features` and `score_folds`), three ways:

- `features-nomarks`: no marks (the baseline, refitted here so that both sides run the same
  code on the same machine);
- `features-marks-exclude`: simulated marks applied by the product's `apply_marks` with the
  default treatment: slices marked 'no lesion visible' are left out of training;
- `features-marks-normal`: the same marks, those slices labelled normal instead;
- `features-marks-exclude-candidates`: as `features-marks-exclude`, and on every slice marked
  'lesion' the nod_ lesion features measure the candidate at the mark, not the largest
  (`FeatureModelConfig.mark_candidates`, `slice_features`' point; training slices only, the
  held-out ones keep the largest, as serving does).

Simulated marks (no reviewer has marked this data): a stand-in reviewer marks every benign and
malignant slice of the fold's inner-train and inner-validation groups, never a held-out one.
It calls a slice lesion-free when the largest dense candidate the feature family finds in the
lung field (`nodule_candidates`, its share of the lung field) is no larger than the median
largest candidate of the fold's own normal training slices; otherwise it marks a lesion at
the most nodule-like dense candidate (the roundest, 4 pi area / perimeter², of those covering
at least `ROUND_SHARE` of the lung field; the largest when none does), its centre with the
radius of a disc of its area. (The lesion/no-lesion calls, all the first three runs use, are
unchanged by where the point is.) The stand-in sees what the model's own features see, so this run shows
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
from model_selection_scores import (
    _cached,
    feature_part,
    fit_features,
    score_folds,
    slice_table,
    study_table,
)

from lung_model.data.audit import inspect
from lung_model.data.lesion_marks import Annotation
from lung_model.data.marks import Treatment, apply_marks
from lung_model.data.split import Split, make_split
from lung_model.imaging.features import (
    FEATURES_VERSION,
    MARK_REACH,
    Candidate,
    FeatureConfig,
    LesionPoint,
    nodule_candidates,
    slice_features,
)
from lung_model.imaging.images import read_gray
from lung_model.settings import get_settings
from lung_model.training.feature_model import FeatureModelConfig
from lung_model.training.fit import Part

# name: (what the no-lesion slices become, or no marks; lesion features at the mark)
RUNS: dict[str, tuple[Treatment | None, bool]] = {
    "features-nomarks": (None, False),
    "features-marks-exclude": ("exclude", False),
    "features-marks-normal": ("normal", False),
    "features-marks-exclude-candidates": ("exclude", True),
}
ROUND_SHARE = 0.005  # of the lung field: the stand-in marks no smaller candidate as the lesion


def _lesion_point(found: list[Candidate]) -> tuple[float, float, float]:
    """(x, y, radius) the stand-in marks: the roundest candidate of at least `ROUND_SHARE`."""

    def measure(candidate: Candidate) -> tuple[float, float, float, float]:
        rows, cols = np.array(candidate.outline).T
        area = 0.5 * abs(np.dot(cols, np.roll(rows, 1)) - np.dot(rows, np.roll(cols, 1)))
        perimeter = float(
            np.hypot(np.diff(rows, append=rows[0]), np.diff(cols, append=cols[0])).sum()
        )
        roundness = 4 * np.pi * area / max(perimeter**2, 1e-9)
        return roundness, float(cols.mean()), float(rows.mean()), float(np.sqrt(area / np.pi))

    eligible = [c for c in found if c.share >= ROUND_SHARE] or found[:1]
    _, x, y, radius = max((measure(c) for c in eligible), key=lambda m: m[0])
    return x, y, radius


def largest_candidates(split: Split, paths: list[str], data: Path) -> dict[str, np.ndarray]:
    """(share, centre x, centre y) of each slice's largest dense candidate, then the
    stand-in's lesion point (x, y, radius; `_lesion_point`): nan without a candidate;
    cached in var/bench/ per data version."""
    config = FeatureModelConfig().features
    file = get_settings().home / "bench" / f"marks-candidates-v2-{split.data_version}.npz"
    cached: dict[str, np.ndarray] = {}
    if file.exists():
        saved = np.load(file)
        cached = dict(zip(saved["paths"].tolist(), saved["x"], strict=True))
    missing = [p for p in paths if p not in cached]
    for p in missing:
        found = nodule_candidates(read_gray(data / p).gray, config)
        if found:
            top, bottom, left, right = found[0].box
            cached[p] = np.array(
                [found[0].share, (left + right) / 2, (top + bottom) / 2, *_lesion_point(found)]
            )
        else:
            cached[p] = np.array([0.0, *[np.nan] * 5])
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
        share, _, _, x, y, radius = largest[path]
        lesion = share > cut
        marks.append(
            Annotation(path, split.label[path], "lesion" if lesion else "no_lesion",
                       float(x) if lesion else None, float(y) if lesion else None,
                       float(radius) if lesion else None, "simulated", "", index)
        )  # fmt: skip
    return marks


def marked_vectors(
    split: Split, points: dict[str, LesionPoint], data: Path, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """Each slice's features with the lesion features at its mark, cached per slice AND
    point (the cache's names carry the point), so marked and unmarked features never mix."""
    names = {f"{p}@{m.x:.3f},{m.y:.3f},{m.radius}": p for p, m in points.items()}
    # at_mark 2: `candidate_at_mark` (to the candidate's pixels, in slice px; a centre's reach
    # on the slice's longer side), not the distance transform in crop px of run 6b
    key = {"features": FEATURES_VERSION, **config.to_dict(), "marked": MARK_REACH,
           "at_mark": 2, "perturbation": None}  # fmt: skip

    def compute(name: str) -> np.ndarray:
        path = names[name]
        return slice_features(read_gray(data / path).gray, config, points[path]).astype(np.float32)

    cached = _cached("features-marked", key, split, sorted(names), compute)
    return {path: cached[name] for name, path in names.items()}


def fit_part(
    split: Split, paths: list[str], data: Path, config: FeatureConfig, points: dict
) -> tuple[Part, int]:
    """`feature_part`, with the marked slices' features at their marks; how many slices
    that changed (a mark on the largest candidate changes nothing)."""
    part = feature_part(split, paths, data, config)
    marked = marked_vectors(split, {p: points[p] for p in paths if p in points}, data, config)
    x = np.stack([marked.get(p, row) for p, row in zip(paths, part.x, strict=True)])
    return replace(part, x=x), int((x != part.x).any(axis=1).sum())


def run(name: str, split: Split, data: Path, k: int) -> dict:
    treatment, at_marks = RUNS[name]
    config = FeatureModelConfig()
    started = time.monotonic()
    saved: dict[str, np.ndarray] = {}
    seconds, counts = [], []
    for index, (train_paths, out_paths) in enumerate(folds(split, k)):
        inner_train, inner_val = hold_back(split, train_paths, seed=index)
        fitted_on, points = split, {}
        if treatment is not None:
            largest = largest_candidates(split, train_paths, data)
            fold = replace(split, part={**{p: "train" for p in inner_train},
                                        **{p: "val" for p in inner_val}})  # fmt: skip
            marks = simulated_marks(split, train_paths, largest)
            marked = apply_marks(fold, marks, treatment)
            fitted_on = marked.split
            if at_marks:
                points = {m.path: LesionPoint(m.x, m.y, m.radius) for m in marks
                          if m.kind == "lesion" and m.x is not None and m.y is not None}  # fmt: skip
            inner_train, inner_val = fitted_on.paths("train"), fitted_on.paths("val")
            counts.append(marked.metrics())
        (train, moved_train), (val, moved_val) = (
            fit_part(fitted_on, p, data, config.features, points) for p in (inner_train, inner_val)
        )
        if counts:
            counts[-1]["candidate_moved_slices"] = moved_train + moved_val
        out = feature_part(split, out_paths, data, config.features)  # patient labels
        predict, threshold, fit_seconds, (rules_part, rules_p) = fit_features(config, train, val)
        saved.update({f"fold{index}_val_p": rules_p, f"fold{index}_val_y": rules_part.y,
                      f"fold{index}_val_g": rules_part.groups, f"fold{index}_out_p": predict(out.x),
                      f"fold{index}_out_y": out.y, f"fold{index}_out_g": out.groups,
                      f"fold{index}_threshold": np.array(np.nan if threshold is None else threshold)})  # fmt: skip
        seconds.append(fit_seconds)
        print(f"{name} fold {index}: {counts[-1] if counts else 'no marks'}", flush=True)
    return {"name": name, "treatment": treatment, "mark_candidates": at_marks,
            "marks_per_fold": counts,
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
