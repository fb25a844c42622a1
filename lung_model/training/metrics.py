"""Evaluation: per-slice and per-study metrics with group bootstrap confidence intervals.

Slices of one pseudo-patient are not independent, so the 95% intervals resample whole groups
(a cluster bootstrap), not slices. Study-level verdicts follow the model's study rule
(`lung_model.training.study_rule`), as serving decides them; study AUCs and calibration use
the mean of each group's calibrated slice probabilities. ROC-AUC is one-vs-rest
(https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lung_model.settings import CLASSES
from lung_model.training.calibration import expected_calibration_error
from lung_model.training.study_rule import StudyRule, decide_studies, study_labels

MALIGNANT, NORMAL = CLASSES.index("malignant"), CLASSES.index("normal")
CI_METRICS = ("accuracy", "macro_f1", "recall_malignant", "recall_benign", "ece", "roc_auc_macro")

# A model's headline figures on its test split: what a retrain passes on, what every promotion
# decision records, and the names the gate's floors use (logged as test_<name> in MLflow;
# study_<name> are the study-level figures).
HEADLINE = (
    "accuracy", "macro_f1", "recall_normal", "recall_benign", "recall_malignant",
    "normal_as_malignant", "roc_auc_malignant", "roc_auc_macro", "ece", "n",
    "study_recall_malignant", "study_normal_as_malignant", "study_macro_f1", "study_n",
)  # fmt: skip
LOWER_IS_BETTER = frozenset(
    {
        "ece",
        "normal_as_malignant",
        "study_normal_as_malignant",
        "invariance_calls_changed",  # the gate's invariance bounds (lung_model.lifecycle.gate)
        "invariance_normal_as_malignant",
    }
)


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    k = len(CLASSES)
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def _auc(labels: np.ndarray, probabilities: np.ndarray, cls: int) -> float:
    from sklearn.metrics import roc_auc_score  # not at import: serving needs only `classify`

    positive = labels == cls
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, probabilities[:, cls]))


def classify(probabilities: np.ndarray, malignant_threshold: float | None = None) -> np.ndarray:
    """The decision rule: malignant when its probability reaches the threshold, otherwise
    the likelier of normal and benign; without a threshold, the most probable class."""
    if malignant_threshold is None:
        return probabilities.argmax(axis=1)
    others = probabilities.copy()
    others[:, MALIGNANT] = -1.0
    return np.where(
        probabilities[:, MALIGNANT] >= malignant_threshold, MALIGNANT, others.argmax(axis=1)
    )


def point_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    malignant_threshold: float | None = None,
    predicted: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy, per-class precision / recall / F1, macro-F1, the share of normal cases
    called malignant, AUCs and ECE (flat floats). The classes are `predicted` when given,
    else the decision rule's (`classify`)."""
    if predicted is None:
        predicted = classify(probabilities, malignant_threshold)
    matrix = confusion(labels, predicted).astype(float)
    tp = np.diag(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(tp / matrix.sum(axis=0))
        recall = np.nan_to_num(tp / matrix.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    present = matrix.sum(axis=1) > 0
    metrics: dict[str, float] = {
        "n": float(len(labels)),
        "accuracy": float(tp.sum() / max(matrix.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "ece": expected_calibration_error(probabilities, labels) if len(labels) else 0.0,
        "normal_as_malignant": float(matrix[NORMAL, MALIGNANT] / max(matrix[NORMAL].sum(), 1)),
    }
    aucs = []
    for i, cls in enumerate(CLASSES):
        metrics[f"precision_{cls}"] = float(precision[i])
        metrics[f"recall_{cls}"] = float(recall[i])
        metrics[f"f1_{cls}"] = float(f1[i])
        metrics[f"roc_auc_{cls}"] = _auc(labels, probabilities, i)
        aucs.append(metrics[f"roc_auc_{cls}"])
    metrics["roc_auc_macro"] = float(np.nanmean(aucs)) if not np.isnan(aucs).all() else float("nan")
    return metrics


def bootstrap_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    rounds: int = 1000,
    seed: int = 0,
    malignant_threshold: float | None = None,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of CI_METRICS, resampling groups with replacement."""
    rng = np.random.default_rng(seed)
    names, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(names))]
    samples: dict[str, list[float]] = {m: [] for m in CI_METRICS}
    for _ in range(rounds):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])
        values = point_metrics(labels[pick], probabilities[pick], malignant_threshold)
        for m in CI_METRICS:
            samples[m].append(values[m])
    return {
        m: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        for m, v in samples.items()
    }


def study_level(
    labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One row per group: its majority label and its slices' mean probabilities."""
    names = np.unique(groups)
    study_probs = np.stack([probabilities[groups == g].mean(axis=0) for g in names])
    return study_labels(labels, groups), study_probs


def study_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    malignant_threshold: float | None,
    rule: StudyRule,
) -> tuple[dict[str, float], np.ndarray]:
    """Study-level metrics with the study rule, and the study confusion matrix."""
    truth, means = study_level(labels, probabilities, groups)
    slice_threshold = 0.5 if malignant_threshold is None else malignant_threshold
    decided = decide_studies(rule, probabilities, groups, slice_threshold)
    return point_metrics(truth, means, predicted=decided), confusion(truth, decided)


def evaluate(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    rounds: int = 1000,
    malignant_threshold: float | None = None,
    study_rule: StudyRule | None = None,
) -> dict[str, Any]:
    """Slice metrics with intervals, the confusion matrix, and study-level metrics, all with
    the model's decision rules (`classify` for slices, `study_rule` for studies)."""
    threshold = malignant_threshold
    rule = study_rule or StudyRule()
    studies, study_confusion = study_metrics(labels, probabilities, groups, threshold, rule)
    slice_metrics = point_metrics(labels, probabilities, threshold)
    intervals = (
        bootstrap_intervals(labels, probabilities, groups, rounds, malignant_threshold=threshold)
        if rounds
        else {}
    )
    return {
        "slice": slice_metrics,
        "ci95": {m: list(v) for m, v in intervals.items()},
        "confusion": confusion(labels, classify(probabilities, threshold)).tolist(),
        "study": studies,
        "study_confusion": study_confusion.tolist(),
        "n_groups": int(len(np.unique(groups))),
        "malignant_threshold": threshold,
        "study_rule": rule.to_dict(),
    }


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The HEADLINE figures of an `evaluate` result (study ones as study_<name>)."""
    values = {**result["slice"], **{f"study_{k}": v for k, v in result["study"].items()}}
    return {name: float(values[name]) for name in HEADLINE}


def flatten(result: dict[str, Any], prefix: str) -> dict[str, float]:
    """MLflow metric names: test_macro_f1, test_macro_f1_ci_low, test_study_macro_f1, ..."""
    flat = {f"{prefix}_{k}": v for k, v in result["slice"].items()}
    for metric, (low, high) in result["ci95"].items():
        flat[f"{prefix}_{metric}_ci_low"], flat[f"{prefix}_{metric}_ci_high"] = low, high
    flat.update({f"{prefix}_study_{k}": v for k, v in result["study"].items()})
    return {k: float(v) for k, v in flat.items() if not np.isnan(v)}
