"""Model selection by grouped cross-validation over the train + validation patients.

The fixed test split is never loaded here. Its train and validation groups (67 pseudo-
patients) are cut into `--folds` class-stratified folds of whole groups (scikit-learn's
StratifiedGroupKFold); each fold is scored once by a model trained on the other folds,
exactly as `lung_model.training.fit.fit` trains the real one: a fifth of the training groups
(per class) is held back as the fold's own validation part, which fits the temperature,
the malignant threshold and, if on, early stopping. Metrics are inference-mode metrics on
the held-out fold, with the arg-max and with the model's decision rule. Prints one row per
configuration (mean and standard deviation over folds, and the pooled out-of-fold figures)
and appends every result to var/bench/model_selection.json (the fold probabilities to
var/bench/model_selection-NAME.npz). Run one or a few configurations at a time:
`bench/bench_model_selection.py --configs probe96,probe96-lungs`; `--show` prints the table
of everything saved, `--rules NAME` compares malignant decision rules on NAME's folds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lung_model.data.audit import inspect  # noqa: E402
from lung_model.data.split import make_split  # noqa: E402
from lung_model.imaging.preprocess import PREPROCESS_VERSION, PreprocessConfig, load_files  # noqa: E402
from lung_model.settings import CLASSES, get_settings  # noqa: E402
from lung_model.training.calibration import apply_temperature  # noqa: E402
from lung_model.training.fit import Part, TrainConfig, fit, predict_logits  # noqa: E402
from lung_model.training.metrics import MALIGNANT, point_metrics, study_level  # noqa: E402

# the configurations compared: each is the first default (V1, what the README measured before)
# with these fields changed; "default" is today's TrainConfig() as it is
V1 = {"epochs": 30, "image_size": 128, "dropout": 0.5, "label_smoothing": 0.05, "ema": 0.98,
      "augment": True, "mixup": 0.0, "crop": "none", "early_stopping": True, "members": 1,
      "malignant_threshold": None, "malignant_recall": 0.0}  # fmt: skip
PLAIN = {"augment": False, "ema": 0.0, "early_stopping": False, "label_smoothing": 0.0}
LUNGS96 = {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "lungs"}
CONFIGS: dict[str, dict | None] = {
    "default": None,
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
            f"-{preprocess.reduce_to}-{split.data_version}"
        )
        file = cache / f"{key}.npz"
        everything = sorted(split.part)
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


def score(labels, probabilities, groups, threshold) -> dict[str, float]:
    row = {}
    for rule, t in (("argmax", None), ("rule", threshold)):
        s = point_metrics(labels, probabilities, t)
        study = point_metrics(*study_level(labels, probabilities, groups), t)
        row.update({
            f"{rule}_macro_f1": s["macro_f1"], f"{rule}_recall_malignant": s["recall_malignant"],
            f"{rule}_recall_benign": s["recall_benign"], f"{rule}_study_macro_f1": study["macro_f1"],
        })  # fmt: skip
    row["auc_malignant"] = point_metrics(labels, probabilities)["roc_auc_malignant"]
    row["auc_benign"] = point_metrics(labels, probabilities)["roc_auc_benign"]
    row["ece"] = point_metrics(labels, probabilities)["ece"]
    return row


def cross_validate(name: str, config: TrainConfig, split, data: Path, k: int) -> dict:
    started = time.monotonic()
    rows, pooled = [], {"y": [], "p": [], "g": [], "t": []}
    saved: dict[str, np.ndarray] = {}  # every fold's probabilities, to study decision rules
    for index, (train_paths, out_paths) in enumerate(folds(split, k)):
        inner_train, inner_val = hold_back(split, train_paths, seed=index)
        preprocess = config.preprocess()
        train, val, out = (
            part(split, p, data, preprocess) for p in (inner_train, inner_val, out_paths)
        )
        fitted = fit(config, train, val, progress=False)
        p = apply_temperature(predict_logits(fitted.network, out.x), fitted.temperature)
        saved[f"fold{index}_val_p"] = apply_temperature(
            predict_logits(fitted.network, val.x), fitted.temperature
        )
        saved[f"fold{index}_val_y"], saved[f"fold{index}_val_g"] = val.y, val.groups
        saved[f"fold{index}_out_p"], saved[f"fold{index}_out_y"] = p, out.y
        saved[f"fold{index}_out_g"] = out.groups
        threshold = fitted.malignant_threshold
        rows.append(
            {
                **score(out.y, p, out.groups, threshold),
                "threshold": threshold,
                "epoch": fitted.best_epoch,
            }
        )
        print(name, index, {k: round(v, 3) for k, v in rows[-1].items()}, flush=True)
        for key, value in zip(
            "ypgt", (out.y, p, out.groups, np.full(len(out.y), threshold)), strict=True
        ):
            pooled[key].append(value)
    np.savez(get_settings().home / "bench" / f"model_selection-{name}.npz", **saved)
    y, p, g = (np.concatenate(pooled[k]) for k in "ypg")
    decided = p.copy()  # arg-max of these = each fold's own rule
    decided[:, MALIGNANT] = np.where(p[:, MALIGNANT] >= np.concatenate(pooled["t"]), 2.0, -1.0)
    pooled_rule = point_metrics(y, decided)
    return {
        "name": name, "config": config.params(), "folds": rows, "minutes": (time.monotonic() - started) / 60,
        "pooled": score(y, p, g, None), "pooled_rule": {
            "macro_f1": pooled_rule["macro_f1"], "recall_malignant": pooled_rule["recall_malignant"],
            "recall_benign": pooled_rule["recall_benign"]},
    }  # fmt: skip


COLUMNS = ("argmax_macro_f1", "argmax_recall_malignant", "argmax_recall_benign",
           "rule_macro_f1", "rule_recall_malignant", "rule_recall_benign",
           "rule_study_macro_f1", "auc_malignant", "auc_benign", "ece")  # fmt: skip


def table(results: list[dict]) -> str:
    head = "| config | " + " | ".join(COLUMNS) + " | pooled macro-F1 (argmax / rule) | min |"
    lines = [head, "|" + " --- |" * (len(COLUMNS) + 3)]
    for r in results:
        cells = []
        for c in COLUMNS:
            v = np.array([f[c] for f in r["folds"]], dtype=float)
            cells.append(f"{np.nanmean(v):.2f} ± {np.nanstd(v):.2f}")
        pooled = f"{r['pooled']['argmax_macro_f1']:.3f} / {r['pooled_rule']['macro_f1']:.3f}"
        lines.append(
            f"| {r['name']} | " + " | ".join(cells) + f" | {pooled} | {r['minutes']:.0f} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("--configs", default="probe96,probe96-lungs")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--show", action="store_true", help="print the table of all saved results")
    parser.add_argument("--rules", help="compare decision rules on this config's saved folds")
    args = parser.parse_args()
    out = get_settings().home / "bench" / "model_selection.json"
    saved = json.loads(out.read_text()) if out.exists() else []
    if args.rules:
        print(rules(args.rules, args.folds))
        return 0
    if not args.show:
        data = args.data or get_settings().raw_data
        split = make_split(inspect(data))
        for name in args.configs.split(","):
            changes = CONFIGS[name]
            config = (
                TrainConfig()
                if changes is None
                else replace(TrainConfig(), **{**V1, "malignant_recall": RULE_RECALL, **changes})
            )
            saved = [r for r in saved if r["name"] != name]
            saved.append(cross_validate(name, config, split, data, args.folds))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(saved, indent=1))
    print(table(saved))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
