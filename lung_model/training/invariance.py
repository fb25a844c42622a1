"""The acquisition-invariance check: does a model's call change when only the acquisition
does? Part of every evaluation (issue 19): the training run's test split, the promotion
gate's re-scoring, the grouped cross-validation bench.

`perturbation_scores` re-scores the evaluated slices under each of
`lung_model.imaging.acquisition.PERTURBATIONS` (another kernel, dose, display window, JPEG
export, matrix size) and reports, per perturbation: the share of slice calls that changed,
the median |change| of p(malignant), malignant recall and normal slices called malignant at
the model's slice rule, and malignant studies found and normal studies called malignant
with its study rule. `summary` adds the worst case over perturbations (what the gate bounds).

Beside the model's malignant ROC-AUC: `nuisance_auc`, the malignant ROC-AUC of a classifier
that sees only the acquisition measurements of the model's inputs (noise, window, matrix),
trained on the training slices and scored on the evaluated ones: near 0.5 when the
fingerprint is gone, near 1 when the export alone tells the class. Three of them
(`nuisance_tables`): on all five measurements of the model's inputs; on the export's
(`export_table`: the noise and window of what the model reads, the matrix of the slice as
exported), since a lung-field crop's own rows and columns are the lung field's shape, not
the export's; and on the export's with the noise one scale up (`coarse_noise_level` of what
the model reads), where a harmonisation that adds its noise at the finest scale leaves the
export's. And `noise_matched_auc`: the model's malignant ROC-AUC on the patients whose raw
noise lies where malignant and other patients overlap, where noise cannot be what separates
them.
See https://scikit-learn.org/stable/modules/generated/sklearn.ensemble.HistGradientBoostingClassifier.html
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lung_model.imaging.acquisition import (
    MEASUREMENTS,
    PERTURBATIONS,
    coarse_noise_level,
    measure,
    measurement_table,
)
from lung_model.settings import CLASSES
from lung_model.training.metrics import classify, study_metrics
from lung_model.training.study_rule import StudyRule

MALIGNANT, NORMAL = CLASSES.index("malignant"), CLASSES.index("normal")
# the figures each perturbation gets (MLflow: <prefix>_invariance_<perturbation>_<name>)
FIGURES = (
    "calls_changed",
    "median_abs_delta_malignant",
    "recall_malignant",
    "normal_as_malignant",
    "study_recall_malignant",
    "study_normal_as_malignant",
)
# the worst case over perturbations, per figure: what the gate bounds
WORST = {
    "calls_changed": max,
    "median_abs_delta_malignant": max,
    "recall_malignant": min,
    "normal_as_malignant": max,
    "study_recall_malignant": min,
    "study_normal_as_malignant": max,
}


def perturbed_inputs(
    grays: Sequence[np.ndarray], prepare: Callable[[np.ndarray], np.ndarray], name: str
) -> np.ndarray:
    """The model inputs of `grays` changed by perturbation `name` (seeded by position)."""
    perturb = PERTURBATIONS[name]
    return np.stack([prepare(perturb(g, i)) for i, g in enumerate(grays)])


def scores_under(
    base: np.ndarray,
    changed: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    threshold: float | None,
    rule: StudyRule,
) -> dict[str, float]:
    """FIGURES of probabilities `changed` against the unperturbed `base` (both (N, 3))."""
    before, after = classify(base, threshold), classify(changed, threshold)
    malignant, normal = labels == MALIGNANT, labels == NORMAL
    studies, _ = study_metrics(labels, changed, groups, threshold, rule)
    return {
        "calls_changed": float(np.mean(before != after)) if len(labels) else 0.0,
        "median_abs_delta_malignant": float(
            np.median(np.abs(changed[:, MALIGNANT] - base[:, MALIGNANT]))
        )
        if len(labels)
        else 0.0,
        "recall_malignant": float(np.mean(after[malignant] == MALIGNANT))
        if malignant.any()
        else float("nan"),
        "normal_as_malignant": float(np.mean(after[normal] == MALIGNANT))
        if normal.any()
        else float("nan"),
        "study_recall_malignant": studies["recall_malignant"],
        "study_normal_as_malignant": studies["normal_as_malignant"],
    }


def perturbation_scores(
    grays: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    prepare: Callable[[np.ndarray], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    threshold: float | None,
    rule: StudyRule,
    base: np.ndarray,
    names: Sequence[str] = tuple(PERTURBATIONS),
) -> dict[str, dict[str, float]]:
    """FIGURES per perturbation for decoded (full-resolution) slices, the model's `prepare`
    (gray -> input) and `predict` (inputs -> calibrated probabilities) and its
    probabilities `base` of the unchanged slices."""
    return {
        name: scores_under(
            base, predict(perturbed_inputs(grays, prepare, name)), labels, groups, threshold, rule
        )
        for name in names
    }


def summary(per_perturbation: dict[str, dict[str, float]]) -> dict[str, float]:
    """The worst value of each figure over the perturbations (`worst_<figure>`)."""
    out = {}
    for figure, worst in WORST.items():
        values = [v[figure] for v in per_perturbation.values() if not np.isnan(v[figure])]
        out[f"worst_{figure}"] = float(worst(values)) if values else float("nan")
    return out


# the nuisance-only baselines (`nuisance_tables`), as the metrics name them
NUISANCE_BASELINES = ("nuisance", "nuisance_export", "nuisance_coarse")
# `measurement_table`'s matrix columns: `export_table` takes them from the slice as exported
MATRIX = [MEASUREMENTS.index("rows"), MEASUREMENTS.index("cols")]


@dataclass(frozen=True)
class NuisanceReference:
    """What the nuisance-only baselines learn from: the training slices' `measurement_table`
    as the model reads them (`seen`) and as exported (`raw`), their labels, and the noise one
    scale up of what the model reads (`coarse`)."""

    seen: np.ndarray
    raw: np.ndarray
    labels: np.ndarray
    coarse: np.ndarray


def export_table(raw: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The export's measurements of the model's inputs: `seen`'s (the `measurement_table` of
    what the model reads), with the matrix of the slice as exported (`raw`'s) instead of
    its own. A lung-field crop's rows at its fixed longer side are the lung field's shape:
    they told malignant slices apart at AUC 0.775 among the 512 x 512 slices alone, where the
    matrix cannot (docs/MODEL.md, run 13)."""
    out = np.array(seen, dtype=np.float64, copy=True)
    out[:, MATRIX] = raw[:, MATRIX]
    return out


def nuisance_tables(seen: np.ndarray, raw: np.ndarray, coarse: np.ndarray) -> dict[str, np.ndarray]:
    """What each nuisance-only baseline reads, by name: `seen` (the `measurement_table` of what
    the model reads), the export's (`export_table`, with `raw`'s matrix) and the export's with
    `coarse`, the noise one scale up of what the model reads."""
    export = export_table(raw, seen)
    return {
        "nuisance": seen,
        "nuisance_export": export,
        "nuisance_coarse": np.column_stack([export, coarse]),
    }


def nuisance_probabilities(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray
) -> np.ndarray:
    """p(malignant) of the evaluated slices from gradient-boosted trees fitted on the
    training slices' acquisition measurements only (`measurement_table`); NaN when the
    training slices are all malignant or none is."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    positive = train_y == MALIGNANT
    if not 0 < positive.sum() < len(train_y):
        return np.full(len(test_x), np.nan)
    trees = HistGradientBoostingClassifier(
        max_depth=3, max_iter=100, learning_rate=0.1, class_weight="balanced", random_state=0
    ).fit(train_x, positive)
    return np.asarray(trees.predict_proba(test_x)[:, 1], dtype=np.float64)


def nuisance_auc(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    """Malignant ROC-AUC of the nuisance-only baseline (`nuisance_probabilities`) on the
    evaluated slices; NaN when either side lacks malignant or other slices."""
    from sklearn.metrics import roc_auc_score

    p = nuisance_probabilities(train_x, train_y, test_x)
    positive = test_y == MALIGNANT
    if np.isnan(p).any() or not 0 < positive.sum() < len(test_y):
        return float("nan")
    return float(roc_auc_score(positive, p))


def noise_matched_auc(
    labels: np.ndarray, p_malignant: np.ndarray, groups: np.ndarray, raw_noise: np.ndarray
) -> dict[str, float]:
    """The model's malignant ROC-AUC on the patients whose median raw noise lies inside both
    the malignant patients' range and the other patients' range (their overlap), and how
    many of each there are. NaN when the overlap lacks either."""
    from sklearn.metrics import roc_auc_score

    names = np.unique(groups)
    noise = np.array([np.median(raw_noise[groups == g]) for g in names])
    malignant = np.array([np.mean(labels[groups == g] == MALIGNANT) > 0.5 for g in names])
    out = {"auc": float("nan"), "malignant_patients": 0.0, "other_patients": 0.0}
    if not malignant.any() or malignant.all():
        return out
    low = max(noise[malignant].min(), noise[~malignant].min())
    high = min(noise[malignant].max(), noise[~malignant].max())
    inside = set(names[(noise >= low) & (noise <= high)])
    rows = np.array([g in inside for g in groups])
    positive = labels[rows] == MALIGNANT
    out["malignant_patients"] = float(sum(malignant[(noise >= low) & (noise <= high)]))
    out["other_patients"] = float(len(inside) - out["malignant_patients"])
    if 0 < positive.sum() < len(positive):
        out["auc"] = float(roc_auc_score(positive, p_malignant[rows]))
    return out


def check(
    grays: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    prepare: Callable[[np.ndarray], np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    threshold: float | None,
    rule: StudyRule,
    seen: Callable[[np.ndarray], np.ndarray],
    reference: NuisanceReference | None = None,
    base: np.ndarray | None = None,
) -> dict[str, Any]:
    """The whole check on evaluated slices (decoded at full resolution): `perturbation_scores`
    and their `summary`, the model's malignant ROC-AUC, the nuisance-only baselines' on the
    acquisition measurements of the slices as the model sees them (`seen`: harmonised, or
    as decoded), on the export's (`export_table`) and on those with the noise one scale up,
    trained on `reference` (NaN without), and `noise_matched_auc`. `base`: the model's
    probabilities of the unchanged slices when the caller has them (else predicted from
    `prepare`d `grays`)."""
    from lung_model.training.metrics import point_metrics

    if base is None:
        base = predict(np.stack([prepare(g) for g in grays]))
    per = perturbation_scores(grays, labels, groups, prepare, predict, threshold, rule, base)
    raw = measurement_table([measure(g) for g in grays])
    baselines = dict.fromkeys(NUISANCE_BASELINES, float("nan"))
    if reference is not None:
        shown = [seen(g) for g in grays]
        fit = nuisance_tables(reference.seen, reference.raw, reference.coarse)
        evaluated = nuisance_tables(
            measurement_table([measure(s) for s in shown]), raw,
            np.array([coarse_noise_level(s) for s in shown]),
        )  # fmt: skip
        baselines = {
            name: nuisance_auc(fit[name], reference.labels, evaluated[name], labels)
            for name in NUISANCE_BASELINES
        }
    raw_noise = raw[:, MEASUREMENTS.index("noise")]
    return {
        "perturbations": per,
        "worst": summary(per),
        "auc_malignant": point_metrics(labels, base)["roc_auc_malignant"],
        **{f"{name}_auc_malignant": auc for name, auc in baselines.items()},
        "noise_matched": noise_matched_auc(labels, base[:, MALIGNANT], groups, raw_noise),
    }


def flatten(result: dict[str, Any], prefix: str) -> dict[str, float]:
    """MLflow metric names: <prefix>_invariance_<perturbation>_<figure>, the worst cases as
    <prefix>_invariance_worst_<figure>, <prefix>_nuisance_auc_malignant, ..."""
    flat = {
        f"{prefix}_invariance_{name}_{figure}": value
        for name, figures in result["perturbations"].items()
        for figure, value in figures.items()
    }
    flat.update({f"{prefix}_invariance_{k}": v for k, v in result["worst"].items()})
    for name in NUISANCE_BASELINES:  # the last two absent from reports logged before them
        flat[f"{prefix}_{name}_auc_malignant"] = result.get(f"{name}_auc_malignant", float("nan"))
    matched = result["noise_matched"]
    flat[f"{prefix}_noise_matched_auc_malignant"] = matched["auc"]
    flat[f"{prefix}_noise_matched_malignant_patients"] = matched["malignant_patients"]
    flat[f"{prefix}_noise_matched_other_patients"] = matched["other_patients"]
    return {k: float(v) for k, v in flat.items() if not np.isnan(v)}
