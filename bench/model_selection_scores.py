"""Helpers of bench_model_selection.py: the feature family's fold inputs and fits, and the
scores and tables every family gets from its saved fold predictions.

A fold is scored from five things only: the inner-validation and held-out calibrated
probabilities, their labels and groups, and the model's slice threshold. So every family
(the CNN, the LightGBM feature model, a scikit-learn gradient-boosting reference) is scored
by the same code, and a saved run can be rescored (`--rescore NAME`) without refitting.

Slice columns: malignant ROC-AUC (one-vs-rest); benign-vs-normal ROC-AUC on the normal and
benign slices only, ranked by p_benign / (p_benign + p_normal) (the study rule's benign
share); malignant recall and normal slices called malignant at the model's slice rule;
macro-F1 with the arg-max and with the rule; top-label ECE; fit seconds (wall clock,
excluding feature extraction, which is cached). Study columns, for every statistic of
`lung_model.training.study_rule.STATISTICS`: the rule's cuts fitted on the fold's
inner-validation studies (`fit_study_rule`), applied to the held-out studies
(`study_metrics`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from lung_model.imaging.features import FEATURES_VERSION, FeatureConfig, slice_features
from lung_model.imaging.images import read_gray
from lung_model.settings import CLASSES, get_settings
from lung_model.training import feature_model as product
from lung_model.training.calibration import (
    apply_temperature,
    fit_malignant_threshold,
    fit_temperature,
)
from lung_model.training.feature_model import FeatureModelConfig, fit_feature_model
from lung_model.training.fit import Part
from lung_model.training.metrics import point_metrics, study_metrics
from lung_model.training.study_rule import STATISTICS, fit_study_rule

MALIGNANT, BENIGN, NORMAL = (CLASSES.index(c) for c in ("malignant", "benign", "normal"))
_FEATURES: dict[FeatureConfig, dict[str, np.ndarray]] = {}


def feature_vectors(split, paths: list[str], data: Path, config: FeatureConfig) -> dict:
    """Each path's feature vector, computed once per data version and feature settings and
    cached in var/bench/features/ (only the paths asked for: never the test groups)."""
    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    file = (
        get_settings().home / "bench" / "features"
        / f"v{FEATURES_VERSION}-{digest[:10]}-{split.data_version}.npz"
    )  # fmt: skip
    if config not in _FEATURES:
        cached: dict[str, np.ndarray] = {}
        if file.exists():
            saved = np.load(file)
            cached = dict(zip(saved["paths"].tolist(), saved["x"], strict=True))
        _FEATURES[config] = cached
    cached = _FEATURES[config]
    missing = [p for p in paths if p not in cached]
    if missing:
        started = time.monotonic()
        for p in missing:
            cached[p] = slice_features(read_gray(data / p).gray, config).astype(np.float32)
        print(f"features of {len(missing)} slices in {time.monotonic() - started:.0f} s")
        file.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(cached)
        np.savez(file, paths=np.array(names), x=np.stack([cached[p] for p in names]))
    return cached


def feature_part(split, paths: list[str], data: Path, config: FeatureConfig) -> Part:
    vectors = feature_vectors(split, paths, data, config)
    return Part(
        np.stack([vectors[p] for p in paths]),
        np.array([CLASSES.index(split.label[p]) for p in paths]),
        np.array([split.group[p] for p in paths]),
        paths,
    )


def fit_features(config: FeatureModelConfig, train: Part, val: Part, hgb: bool = False):
    """(predict, slice threshold, fit seconds, (part, probabilities) the rules are fitted on):
    the product's `fit_feature_model` (LightGBM; since 6ae7106 trees on train + val, rules on
    their grouped out-of-fold scores, which the study statistics are then compared on too),
    or with `hgb` scikit-learn's HistGradientBoostingClassifier with the same depth, trees,
    learning rate and balanced weights, calibrated and thresholded by the same functions
    (the research's model: a reference, not a product option; rules on the validation part)."""
    started = time.monotonic()
    if not hgb:
        model = fit_feature_model(config, train, val)
        seconds = time.monotonic() - started
        rules_on = val, model.predict(val.x)
        if hasattr(product, "out_of_fold_logits"):  # rules fitted out of fold on train + val
            both = Part(*(np.concatenate([a, b]) for a, b in
                          ((train.x, val.x), (train.y, val.y), (train.groups, val.groups))))  # fmt: skip
            logits = product.out_of_fold_logits(config, both)
            rules_on = both, apply_temperature(logits, model.temperature)
        check = fit_study_rule(
            config.study_statistic, rules_on[0].y, rules_on[1], rules_on[0].groups,
            model.malignant_threshold,
        )  # fmt: skip
        if check != model.study_rule:
            print(f"WARNING: study rule {check} is not the product's {model.study_rule}")
        return model.predict, model.malignant_threshold, seconds, rules_on
    from sklearn.ensemble import HistGradientBoostingClassifier

    trees = HistGradientBoostingClassifier(
        max_depth=config.max_depth,
        max_iter=config.n_estimators,
        learning_rate=config.learning_rate,
        min_samples_leaf=config.min_child_samples,
        class_weight="balanced",
        early_stopping=False,
        random_state=config.seed,
    ).fit(train.x, train.y)
    temperature = fit_temperature(trees.decision_function(val.x), val.y)

    def predict(x: np.ndarray) -> np.ndarray:
        return apply_temperature(trees.decision_function(x), temperature)

    threshold = fit_malignant_threshold(predict(val.x), val.y, config.malignant_recall, MALIGNANT)
    return predict, threshold, time.monotonic() - started, (val, predict(val.x))


def _benign_normal_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    pair = np.isin(y, (BENIGN, NORMAL))
    share = p[pair, BENIGN] / np.maximum(p[pair, BENIGN] + p[pair, NORMAL], 1e-12)
    benign = y[pair] == BENIGN
    return float(roc_auc_score(benign, share)) if 0 < benign.sum() < len(benign) else np.nan


def slice_scores(y: np.ndarray, p: np.ndarray, threshold: float | None, predicted=None) -> dict:
    plain, rule = point_metrics(y, p), point_metrics(y, p, threshold, predicted)
    return {
        "auc_malignant": plain["roc_auc_malignant"],
        "auc_benign_normal": _benign_normal_auc(y, p),
        "rule_recall_malignant": rule["recall_malignant"],
        "rule_normal_as_malignant": rule["normal_as_malignant"],
        "argmax_macro_f1": plain["macro_f1"],
        "rule_macro_f1": rule["macro_f1"],
        "ece": plain["ece"],
    }


def study_scores(fold: dict) -> dict[str, dict]:
    """Per statistic: the rule fitted on the inner-validation studies, scored out of fold."""
    t = 0.5 if fold["threshold"] is None else fold["threshold"]
    out = {}
    for statistic in STATISTICS:
        rule = fit_study_rule(statistic, fold["val_y"], fold["val_p"], fold["val_g"], t)
        metrics, matrix = study_metrics(fold["out_y"], fold["out_p"], fold["out_g"], t, rule)
        out[statistic] = {
            "malignant_found": int(matrix[MALIGNANT, MALIGNANT]),
            "malignant": int(matrix[MALIGNANT].sum()),
            "normal_called_malignant": int(matrix[NORMAL, MALIGNANT]),
            "normal": int(matrix[NORMAL].sum()),
            "benign_called_malignant": int(matrix[BENIGN, MALIGNANT]),
            "benign": int(matrix[BENIGN].sum()),
            "macro_f1": metrics["macro_f1"],
            "malignant_cut": rule.malignant_cut,
            "confusion": matrix.tolist(),
        }
    return out


def pooled_study_macro_f1(folds: list[dict], statistic: str) -> float:
    """Macro-F1 of all held-out studies together (each decided by its own fold's rule)."""
    matrix = sum(np.array(f["studies"][statistic]["confusion"]) for f in folds)
    classes = np.arange(len(CLASSES))  # rows of `confusion`: the truth; columns: decided
    truth = np.repeat(np.repeat(classes, len(classes)), matrix.ravel())
    decided = np.repeat(np.tile(classes, len(classes)), matrix.ravel())
    return point_metrics(truth, np.eye(len(CLASSES))[decided], predicted=decided)["macro_f1"]


def score_folds(saved: dict[str, np.ndarray], k: int, seconds: list[float]) -> dict:
    """Per-fold and pooled scores from saved fold predictions (`fold{i}_{val,out}_{p,y,g}`,
    `fold{i}_threshold`, NaN for the arg-max)."""
    from lung_model.training.metrics import classify

    folds, pooled = [], {"y": [], "p": [], "predicted": []}
    for i in range(k):
        fold = {key: saved[f"fold{i}_{key}"] for key in
                ("val_p", "val_y", "val_g", "out_p", "out_y", "out_g")}  # fmt: skip
        t = float(saved[f"fold{i}_threshold"])
        fold["threshold"] = None if np.isnan(t) else t
        row = slice_scores(fold["out_y"], fold["out_p"], fold["threshold"])
        row.update(threshold=t, fit_seconds=seconds[i], studies=study_scores(fold))
        folds.append(row)
        pooled["y"].append(fold["out_y"])
        pooled["p"].append(fold["out_p"])
        pooled["predicted"].append(classify(fold["out_p"], fold["threshold"]))
    y, p, predicted = (np.concatenate(pooled[key]) for key in ("y", "p", "predicted"))
    return {"folds": folds, "pooled": slice_scores(y, p, None, predicted)}


SLICE_COLUMNS = {
    "auc_malignant": "malignant AUC", "auc_benign_normal": "benign-vs-normal AUC",
    "rule_recall_malignant": "malignant recall (rule)",
    "rule_normal_as_malignant": "normal → malignant (rule)",
    "argmax_macro_f1": "macro-F1 argmax", "rule_macro_f1": "macro-F1 rule", "ece": "ECE",
}  # fmt: skip


def _mean_sd(values) -> str:
    v = np.array(values, dtype=float)
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}"


def slice_table(results: list[dict]) -> str:
    """Mean ± sd over folds; pooled: all held-out slices together, each fold's own rule."""
    head = ["config", *SLICE_COLUMNS.values(), "fit s", "pooled AUC / recall / n→m / F1 rule"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        cells = [_mean_sd([f[c] for f in r["folds"]]) for c in SLICE_COLUMNS]
        pooled = r["pooled"]
        keys = ("auc_malignant", "rule_recall_malignant", "rule_normal_as_malignant", "rule_macro_f1")  # fmt: skip
        cells.append(_mean_sd([f["fit_seconds"] for f in r["folds"]]).replace(".000", ""))
        cells.append(" / ".join(f"{pooled[key]:.3f}" for key in keys))
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_table(results: list[dict]) -> str:
    """Per statistic: held-out studies found / called, per fold and summed; study macro-F1."""
    head = ["config", "study rule", "malignant studies found (per fold)",
            "normal studies called malignant (per fold)", "benign called malignant",
            "study macro-F1", "pooled study macro-F1"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        for statistic in STATISTICS:
            s = [f["studies"][statistic] for f in r["folds"]]

            def count(hit: str, total: str, s=s) -> str:
                per = " ".join(f"{x[hit]}/{x[total]}" for x in s)
                return f"**{sum(x[hit] for x in s)}/{sum(x[total] for x in s)}** ({per})"

            lines.append(
                f"| {r['name']} | {statistic} | {count('malignant_found', 'malignant')} | "
                f"{count('normal_called_malignant', 'normal')} | "
                f"{sum(x['benign_called_malignant'] for x in s)}/{sum(x['benign'] for x in s)}"
                f" | {_mean_sd([x['macro_f1'] for x in s])} | "
                f"{pooled_study_macro_f1(r['folds'], statistic):.3f} |"
            )
    return "\n".join(lines)
