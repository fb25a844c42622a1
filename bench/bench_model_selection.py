"""Model selection by grouped cross-validation over the train + validation patients.

The fixed test split is never loaded here. Its train and validation groups (67 pseudo-
patients) are cut into `--folds` class-stratified folds of whole groups (scikit-learn's
StratifiedGroupKFold); each fold is scored once by a model trained on the other folds,
exactly as the training job trains the real one: a fifth of the training groups (per class)
is held back as the fold's own validation part, which fits the temperature, the malignant
threshold, the study rule's cuts and, if on, early stopping.

Both model families go through the same folds: the CNN (`cnn` = today's `TrainConfig()`,
and the earlier CNN probes) and the lung-field feature model through the product's
`fit_feature_model` (`features` = `FeatureModelConfig()`, LightGBM; `features-r95`: its
malignant threshold for recall 0.95; `features-hgb`: scikit-learn's gradient boosting with
the same settings, the research's reference). Every family is scored by the same code
(`model_selection_scores.py`): slice columns (malignant AUC, benign-vs-normal AUC, malignant
recall and normal slices called malignant at the slice rule, macro-F1 arg-max and rule, ECE,
fit seconds; mean ± sd over folds and pooled) and, for every study statistic, malignant
studies found, normal studies called malignant and study macro-F1 (per fold and pooled).
Results are appended to var/bench/model_selection.json, fold predictions saved to
var/bench/model_selection-NAME.npz. `bench/bench_model_selection.py --configs
features,features-r95,features-hgb,cnn`; `--show` prints the tables of everything saved,
`--rescore NAME` scores saved folds again, `--rules NAME` compares slice decision rules.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_selection_scores import (  # noqa: E402
    feature_part,
    fit_features,
    score_folds,
    slice_table,
    study_table,
)

from lung_model.data.audit import inspect  # noqa: E402
from lung_model.data.split import make_split  # noqa: E402
from lung_model.imaging.preprocess import PREPROCESS_VERSION, PreprocessConfig, load_files  # noqa: E402
from lung_model.settings import CLASSES, get_settings  # noqa: E402
from lung_model.training.calibration import apply_temperature  # noqa: E402
from lung_model.training.feature_model import FeatureModelConfig  # noqa: E402
from lung_model.training.fit import Part, TrainConfig, fit, predict_logits  # noqa: E402
from lung_model.training.metrics import MALIGNANT, point_metrics  # noqa: E402

# the configurations compared: each is the first default (V1, what the README measured before)
# with these fields changed; "default" is today's TrainConfig() as it is
V1 = {"epochs": 30, "image_size": 128, "dropout": 0.5, "label_smoothing": 0.05, "ema": 0.98,
      "augment": True, "mixup": 0.0, "crop": "none", "early_stopping": True, "members": 1,
      "malignant_threshold": None, "malignant_recall": 0.0}  # fmt: skip
PLAIN = {"augment": False, "ema": 0.0, "early_stopping": False, "label_smoothing": 0.0}
LUNGS96 = {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "lungs"}
CONFIGS: dict[str, dict | None] = {
    "cnn": None,
    "default-v1": {},
    "probe": {**PLAIN, "epochs": 25, "dropout": 0.3},
    "probe96": {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96},
    "probe96-body": {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "body"},
    "probe96-lungs": {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "lungs"},
    "aug96-lungs": {**LUNGS96, "augment": True},
    "mixup96-lungs": {**LUNGS96, "mixup": 0.4},
    "augmix96-lungs": {**LUNGS96, "augment": True, "mixup": 0.4},
    "small96-lungs": {**LUNGS96, "augment": True, "widths": (8, 16, 32, 64), "dropout": 0.5},
    "aug64-lungs": {**LUNGS96, "augment": True, "image_size": 64},
    "aug128-lungs": {**LUNGS96, "augment": True, "image_size": 128},
    "augema96-lungs": {**LUNGS96, "augment": True, "ema": 0.98},
    "aug96-lungs-e15": {**LUNGS96, "augment": True, "epochs": 15},
    "aug96-lungs-e40": {**LUNGS96, "augment": True, "epochs": 40},
    "aug96-lungs-group": {**LUNGS96, "augment": True, "norm": "group"},
    "lungs96-ens3": {**LUNGS96, "members": 3},
    "lungs128": {**LUNGS96, "image_size": 128},
    "lungs128-d256": {**LUNGS96, "image_size": 128, "decode_size": 256},
    "lungs96-e15": {**LUNGS96, "epochs": 15},
    "lungs96-e10": {**LUNGS96, "epochs": 10},
    "lungs96-e15-ens3": {**LUNGS96, "epochs": 15, "members": 3},
    "lungs96-small": {**LUNGS96, "widths": (8, 16, 32, 64), "dropout": 0.5},
    "mixup96-lungs-ens3": {**LUNGS96, "mixup": 0.4, "members": 3},
    "aug96-lungs-wd": {**LUNGS96, "augment": True, "weight_decay": 5e-3, "label_smoothing": 0.1},
}  # fmt: skip
RULE_RECALL = 0.98  # the malignant recall every configuration's threshold is fitted for
# the feature family: (config, fit scikit-learn's HistGradientBoosting instead of LightGBM)
FEATURE_CONFIGS: dict[str, tuple[FeatureModelConfig, bool]] = {
    "features": (FeatureModelConfig(), False),
    "features-r95": (FeatureModelConfig(malignant_recall=0.95), False),
    "features-hgb": (FeatureModelConfig(), True),
}


def folds(split, k: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """(training paths, held-out paths) per fold, over the train and validation parts only."""
    from sklearn.model_selection import StratifiedGroupKFold

    paths = sorted(p for p, part in split.part.items() if part in ("train", "val"))
    labels = [split.label[p] for p in paths]
    groups = [split.group[p] for p in paths]
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        ([paths[i] for i in fit_idx], [paths[i] for i in out_idx])
        for fit_idx, out_idx in cv.split(paths, labels, groups)
    ]


def hold_back(split, paths: list[str], share: float = 0.2, seed: int = 0):
    """`paths` cut into (train, validation) by whole groups, `share` of each class's groups."""
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for cls in CLASSES:
        names = sorted({split.group[p] for p in paths if split.label[p] == cls})
        rng.shuffle(names)
        held.update(names[: max(1, round(share * len(names)))])
    return [p for p in paths if split.group[p] not in held], [
        p for p in paths if split.group[p] in held
    ]


_ARRAYS: dict[PreprocessConfig, dict[str, np.ndarray]] = {}


def part(split, paths: list[str], data: Path, preprocess: PreprocessConfig) -> Part:
    if preprocess not in _ARRAYS:
        cache = get_settings().home / "bench" / "arrays"
        key = (
            f"v{PREPROCESS_VERSION}-{preprocess.image_size}-{preprocess.crop}"
            f"-{preprocess.reduce_to}-{split.data_version}-trainval"
        )
        file = cache / f"{key}.npz"
        everything = sorted(p for p, name in split.part.items() if name != "test")
        if file.exists():
            x = np.load(file)["x"]
        else:
            x = load_files([data / p for p in everything], preprocess)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(file, x=x)
        _ARRAYS[preprocess] = dict(zip(everything, x, strict=True))
    arrays = _ARRAYS[preprocess]
    return Part(
        np.stack([arrays[p] for p in paths]),
        np.array([CLASSES.index(split.label[p]) for p in paths]),
        np.array([split.group[p] for p in paths]),
        paths,
    )


def cnn_fold(config: TrainConfig, split, data: Path, inner_train, inner_val, out_paths):
    """(validation probabilities, held-out probabilities, slice threshold, fit seconds)."""
    preprocess = config.preprocess()
    train, val, out = (
        part(split, p, data, preprocess) for p in (inner_train, inner_val, out_paths)
    )
    started = time.monotonic()
    fitted = fit(config, train, val, progress=False)
    seconds = time.monotonic() - started

    def predict(x: np.ndarray) -> np.ndarray:
        return apply_temperature(predict_logits(fitted.network, x), fitted.temperature)

    return predict(val.x), val.y, val.groups, predict(out.x), fitted.malignant_threshold, seconds


def feature_fold(config, split, data: Path, inner_train, inner_val, out_paths, hgb=False):
    train, val, out = (
        feature_part(split, p, data, config.features) for p in (inner_train, inner_val, out_paths)
    )
    predict, threshold, seconds, (rules_part, rules_p) = fit_features(config, train, val, hgb)
    return rules_p, rules_part.y, rules_part.groups, predict(out.x), threshold, seconds


def cross_validate(name: str, split, data: Path, k: int) -> dict:
    """Fit `name` on every fold, save the fold predictions, then score them."""
    config, fold_fit = configuration(name)
    started = time.monotonic()
    saved: dict[str, np.ndarray] = {}  # every fold's probabilities, to rescore and compare rules
    seconds = []
    for index, (train_paths, out_paths) in enumerate(folds(split, k)):
        inner_train, inner_val = hold_back(split, train_paths, seed=index)
        val_p, val_y, val_g, out_p, threshold, fit_seconds = fold_fit(
            config, split, data, inner_train, inner_val, out_paths
        )  # val_*: what the slice and study rules were fitted on
        saved.update({f"fold{index}_val_p": val_p, f"fold{index}_val_y": val_y,
                      f"fold{index}_val_g": val_g, f"fold{index}_out_p": out_p})  # fmt: skip
        saved[f"fold{index}_out_y"] = np.array([CLASSES.index(split.label[q]) for q in out_paths])
        saved[f"fold{index}_out_g"] = np.array([split.group[q] for q in out_paths])
        saved[f"fold{index}_threshold"] = np.array(np.nan if threshold is None else threshold)
        seconds.append(fit_seconds)
        print(f"{name} fold {index}: threshold {threshold}, fit {fit_seconds:.1f} s", flush=True)
    saved["fit_seconds"] = np.array(seconds)
    np.savez(get_settings().home / "bench" / f"model_selection-{name}.npz", **saved)
    return {"name": name, "config": config.params(), "minutes": (time.monotonic() - started) / 60,
            **score_folds(saved, k, seconds)}  # fmt: skip


def rescore(name: str, k: int) -> dict:
    """A saved run scored again by today's scoring code, without refitting."""
    saved = dict(np.load(get_settings().home / "bench" / f"model_selection-{name}.npz"))
    config, _ = configuration(name)
    return {"name": name, "config": config.params(), "minutes": float("nan"),
            **score_folds(saved, k, saved["fit_seconds"].tolist())}  # fmt: skip


def configuration(name: str):
    """(config, fold fitter) of a configuration name."""
    if name in FEATURE_CONFIGS:
        config, hgb = FEATURE_CONFIGS[name]
        return config, partial(feature_fold, hgb=hgb)
    changes = CONFIGS[name]
    if changes is None:
        return TrainConfig(), cnn_fold
    return replace(TrainConfig(), **{**V1, "malignant_recall": RULE_RECALL, **changes}), cnn_fold


def rules(name: str, folds: int) -> str:
    """Decision rules compared on one configuration's saved fold predictions: each fold's
    threshold is fitted on that fold's own validation groups (or fixed), scored out of fold."""
    from lung_model.training.calibration import fit_malignant_threshold
    from lung_model.training.metrics import classify

    saved = np.load(get_settings().home / "bench" / f"model_selection-{name}.npz")
    candidates: dict[str, object] = {"argmax": None}
    candidates.update({f"fixed {t}": t for t in (0.2, 0.3, 0.4)})
    candidates.update({f"val recall {r}": r for r in (0.9, 0.95, 0.98)})
    lines = [f"decision rules on {name} (mean ± sd over folds; pooled)",
             "| rule | macro-F1 | malignant recall | benign recall | pooled macro-F1 | pooled malignant recall |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label, value in candidates.items():
        rows, ys, ps = [], [], []
        for i in range(folds):
            y, p = saved[f"fold{i}_out_y"], saved[f"fold{i}_out_p"]
            threshold = value
            if label.startswith("val"):
                threshold = fit_malignant_threshold(
                    saved[f"fold{i}_val_p"], saved[f"fold{i}_val_y"], float(value), MALIGNANT
                )
            rows.append(point_metrics(y, p, threshold))
            decided = np.eye(3)[classify(p, threshold)]
            ys.append(y)
            ps.append(decided)
        pooled = point_metrics(np.concatenate(ys), np.concatenate(ps))
        cells = [
            f"{np.mean([r[m] for r in rows]):.2f} ± {np.std([r[m] for r in rows]):.2f}"
            for m in ("macro_f1", "recall_malignant", "recall_benign")
        ]
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {pooled['macro_f1']:.3f} | {pooled['recall_malignant']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="features,cnn")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--show", action="store_true", help="print the tables of all saved results")
    parser.add_argument("--rescore", help="score these configs' saved folds again (comma list)")
    parser.add_argument("--rules", help="compare slice decision rules on this config's saved folds")
    args = parser.parse_args()
    out = get_settings().home / "bench" / "model_selection.json"
    saved = json.loads(out.read_text()) if out.exists() else []
    if args.rules:
        print(rules(args.rules, args.folds))
        return 0
    names = (args.rescore or args.configs).split(",")
    if not args.show:
        if not args.rescore:
            data = args.data or get_settings().raw_data
            split = make_split(inspect(data))
        for name in names:
            result = (
                rescore(name, args.folds)
                if args.rescore
                else cross_validate(name, split, data, args.folds)
            )
            current = json.loads(out.read_text()) if out.exists() else []  # others may run too
            saved = [r for r in current if r["name"] != name] + [result]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(saved, indent=1, default=float))
        saved = [r for r in saved if r["name"] in names]
    print("Slices (mean ± sd over folds; pooled: all held-out slices, each fold's own rule)")
    print(slice_table(saved))
    print("\nStudies (each rule's cuts fitted on the fold's inner-validation studies)")
    print(study_table(saved))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
