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
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from lung_model.imaging.acquisition import (
    MEASURE_VERSION,
    PERTURBATIONS,
    HarmoniseConfig,
    coarse_noise_level,
    harmonise,
    measure,
    measurement_table,
)
from lung_model.imaging.features import (
    FEATURES_VERSION,
    FeatureConfig,
    seen_crop,
    slice_features,
)
from lung_model.imaging.images import read_gray
from lung_model.imaging.preprocess import PreprocessConfig, prepare
from lung_model.settings import CLASSES, get_settings
from lung_model.training import feature_model as product
from lung_model.training.calibration import (
    apply_temperature,
    fit_malignant_threshold,
    fit_temperature,
)
from lung_model.training.feature_model import FeatureModelConfig, fit_feature_model
from lung_model.training.fit import Part
from lung_model.training.invariance import (
    NUISANCE_BASELINES,
    noise_matched_auc,
    nuisance_probabilities,
    nuisance_tables,
    scores_under,
    summary,
)
from lung_model.training.metrics import point_metrics, study_metrics
from lung_model.training.reacquire import reacquired
from lung_model.training.study_rule import STATISTICS, fit_study_rule

MALIGNANT, BENIGN, NORMAL = (CLASSES.index(c) for c in ("malignant", "benign", "normal"))
_FEATURES: dict[tuple, dict[str, np.ndarray]] = {}


def perturbed_gray(data: Path, path: str, perturbation: str | None) -> np.ndarray:
    """The slice at full resolution, changed by a named perturbation (seeded by its path)."""
    gray = read_gray(data / path).gray
    if perturbation is None:
        return gray
    if perturbation.startswith("augment"):  # copy k of the training augmentation, as trained
        # "augment1", "augment1@0.6-1.5" (its contrast range), "augment1@0.6-1.5~0.0015-0.005"
        # (and its noise range)
        copy, _, ranges = perturbation[len("augment") :].partition("@")
        contrast, _, noise = ranges.partition("~")
        kept = {"contrast": contrast, "noise": noise}
        given = {k: tuple(float(v) for v in r.split("-")) for k, r in kept.items() if r}
        return reacquired(gray, int(copy), **given)
    return PERTURBATIONS[perturbation](gray, zlib.crc32(path.encode()))


def _cached(kind: str, key: dict, split, paths: list[str], compute) -> dict:
    """`compute(path)` of each path, cached per data version and `key` in var/bench/<kind>/
    (only the paths asked for: never the test groups)."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    file = get_settings().home / "bench" / kind / f"{digest[:12]}-{split.data_version}.npz"
    memo = (kind, digest)
    if memo not in _FEATURES:
        cached: dict[str, np.ndarray] = {}
        if file.exists():
            saved = np.load(file)
            cached = dict(zip(saved["paths"].tolist(), saved["x"], strict=True))
        _FEATURES[memo] = cached
    cached = _FEATURES[memo]
    missing = [p for p in paths if p not in cached]
    if missing:
        started = time.monotonic()
        for p in missing:
            cached[p] = compute(p)
        print(f"{kind} {key.get('perturbation')} of {len(missing)} slices in "
              f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
        file.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(cached)
        np.savez(file, paths=np.array(names), x=np.stack([cached[p] for p in names]))
    return cached


def feature_vectors(
    split, paths: list[str], data: Path, config: FeatureConfig, perturbation: str | None = None
) -> dict:
    """Each path's feature vector (of the slice changed by `perturbation`), computed once per
    data version, feature settings and perturbation, cached in var/bench/features/."""
    values = config.to_dict()
    if config.groups == FeatureConfig().groups:  # every group: the key before groups existed
        del values["groups"]
    if config.texture_region == FeatureConfig().texture_region:  # the key before it existed
        del values["texture_region"]
    key = {"features": FEATURES_VERSION, **values, "perturbation": perturbation}
    return _cached("features", key, split, paths, lambda p: slice_features(
        perturbed_gray(data, p, perturbation), config).astype(np.float32))  # fmt: skip


def cnn_inputs(
    split, paths: list[str], data: Path, config: PreprocessConfig, perturbation: str | None = None
) -> dict:
    """Each path's CNN input (`prepare`) of the slice decoded at full resolution and changed
    by `perturbation` (or a training copy, `augment<k>`), cached in var/bench/cnn-inputs/."""
    key = {"inputs": config.to_dict(), "perturbation": perturbation}
    return _cached("cnn-inputs", key, split, paths,
                   lambda p: prepare(perturbed_gray(data, p, perturbation), config))  # fmt: skip


def _seen_gray(path: Path, common: HarmoniseConfig | None, crop: FeatureConfig | None):
    """The slice as the model sees it: with `crop`, the lung-field crop its features read
    (`seen_crop`); else harmonised to `common`, or as decoded."""
    gray = read_gray(path).gray
    if crop is not None:
        return seen_crop(gray, crop)
    return gray if common is None else harmonise(gray, common)


# what `seen_vectors` measures of the slice as the model sees it: its acquisition
# measurements (`measurement_table` order), or its noise one scale up (`coarse_noise_level`)
SEEN_MEASURES = {
    "acquisition": lambda gray: measurement_table([measure(gray)])[0],
    "coarse-noise": lambda gray: np.array([coarse_noise_level(gray)]),
}


def seen_vectors(
    kind: str,
    split,
    paths: list[str],
    data: Path,
    common: HarmoniseConfig | None,
    crop: FeatureConfig | None = None,
) -> dict:
    """Each path's `SEEN_MEASURES[kind]` of the slice as the model sees it (`_seen_gray`),
    cached."""
    key = {
        kind: MEASURE_VERSION if kind == "acquisition" else 1,
        "harmonise": None if common is None else common.to_dict(),
        "perturbation": None,
    }  # fmt: skip (the acquisition's key as it was first cached)
    if crop is not None:
        key["crop"] = crop.to_dict()
    of = SEEN_MEASURES[kind]
    return _cached(kind, key, split, paths, lambda p: of(_seen_gray(data / p, common, crop)))


acquisition_vectors = partial(seen_vectors, "acquisition")
coarse_vectors = partial(seen_vectors, "coarse-noise")


def acquisition_extras(
    split,
    fit_on: list[str],
    out_paths: list[str],
    data: Path,
    common: HarmoniseConfig | None,
    crop: FeatureConfig | None = None,
) -> dict[str, np.ndarray]:
    """The invariance check's inputs besides the perturbed scores, for any family: the
    nuisance-only baselines' p(malignant) of the held-out slices, trained on the `fit_on`
    slices' acquisition measurements of the model's inputs (with `crop`, the harmonised
    lung-field crop), on the export's (`export_table`: their noise and window, the slice's
    matrix) and on those with the noise one scale up, and the held-out slices' raw noise."""
    both = [*fit_on, *out_paths]
    seen = acquisition_vectors(split, both, data, common, crop)
    raw = acquisition_vectors(split, both, data, None)
    coarse = coarse_vectors(split, both, data, common, crop)
    labels = np.array([CLASSES.index(split.label[p]) for p in fit_on])

    def tables(paths: list[str]) -> dict[str, np.ndarray]:
        return nuisance_tables(*(np.stack([v[p] for p in paths]) for v in (seen, raw, coarse)))

    fit, out = tables(fit_on), tables(out_paths)
    return {
        **{
            f"{name}_p": nuisance_probabilities(fit[name], labels, out[name])
            for name in NUISANCE_BASELINES
        },  # fmt: skip
        "out_noise": np.array([raw[p][0] for p in out_paths]),
    }


def feature_part(
    split,
    paths: list[str],
    data: Path,
    config: FeatureConfig,
    perturbation: str | None = None,
    columns: np.ndarray | None = None,
) -> Part:
    """The fold part's features (only `columns` when given: a restricted feature set)."""
    vectors = feature_vectors(split, paths, data, config, perturbation)
    x = np.stack([vectors[p] for p in paths])
    return Part(
        x if columns is None else x[:, columns],
        np.array([CLASSES.index(split.label[p]) for p in paths]),
        np.array([split.group[p] for p in paths]),
        paths,
    )


def fit_features(
    config: FeatureModelConfig,
    train: Part,
    val: Part,
    hgb: bool = False,
    augmented: Part | None = None,
):
    """(predict, slice threshold, fit seconds, (part, probabilities) the rules are fitted on):
    the product's `fit_feature_model` (LightGBM; since 6ae7106 trees on train + val, rules on
    their grouped out-of-fold scores, which the study statistics are then compared on too),
    or with `hgb` scikit-learn's HistGradientBoostingClassifier with the same depth, trees,
    learning rate and balanced weights, calibrated and thresholded by the same functions
    (the research's model: a reference, not a product option; rules on the validation part)."""
    started = time.monotonic()
    if not hgb:
        model = fit_feature_model(config, train, val, augmented)
        seconds = time.monotonic() - started
        rules_on = val, model.predict(val.x)
        if hasattr(product, "out_of_fold_logits"):  # rules fitted out of fold on train + val
            both = Part(*(np.concatenate([a, b]) for a, b in
                          ((train.x, val.x), (train.y, val.y), (train.groups, val.groups))))  # fmt: skip
            logits = product.out_of_fold_logits(
                config, both, augmented, getattr(model, "columns", None)
            )
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


def invariance_scores(saved: dict[str, np.ndarray], i: int, fold: dict) -> dict:
    """The acquisition-invariance check of fold `i` when its perturbed held-out
    probabilities were saved (`fold{i}_out_p@<perturbation>`): FIGURES per perturbation with
    the `any` study rule (the default's), their worst cases, and the nuisance-only
    baselines' malignant AUCs (`fold{i}_nuisance_p`, `_nuisance_export_p`, `_nuisance_coarse_p`)."""
    from sklearn.metrics import roc_auc_score

    t = fold["threshold"]
    rule = fit_study_rule(
        "any", fold["val_y"], fold["val_p"], fold["val_g"], 0.5 if t is None else t
    )
    prefix = f"fold{i}_out_p@"
    # unchanged slices decoded at full resolution as the perturbed ones (a CNN that decodes
    # JPEGs at reduced scale scores them so only here), else the held-out scores
    base = saved.get(f"fold{i}_out_p_full", fold["out_p"])
    per = {
        key[len(prefix):]: scores_under(base, saved[key], fold["out_y"], fold["out_g"], t, rule)
        for key in saved if key.startswith(prefix)
    }  # fmt: skip
    out: dict = {"perturbations": per, "worst": summary(per) if per else {}}
    positive = fold["out_y"] == MALIGNANT
    for key in NUISANCE_BASELINES:  # the last two saved from run 13 on
        if f"fold{i}_{key}_p" in saved:
            out[f"{key}_auc"] = float(roc_auc_score(positive, saved[f"fold{i}_{key}_p"]))
    return out


def score_folds(saved: dict[str, np.ndarray], k: int, seconds: list[float]) -> dict:
    """Per-fold and pooled scores from saved fold predictions (`fold{i}_{val,out}_{p,y,g}`,
    `fold{i}_threshold`, NaN for the arg-max; the invariance check's when saved)."""
    from lung_model.training.metrics import classify

    folds, pooled = [], {"y": [], "p": [], "predicted": []}
    for i in range(k):
        fold = {key: saved[f"fold{i}_{key}"] for key in
                ("val_p", "val_y", "val_g", "out_p", "out_y", "out_g")}  # fmt: skip
        t = float(saved[f"fold{i}_threshold"])
        fold["threshold"] = None if np.isnan(t) else t
        row = slice_scores(fold["out_y"], fold["out_p"], fold["threshold"])
        row.update(threshold=t, fit_seconds=seconds[i], studies=study_scores(fold),
                   invariance=invariance_scores(saved, i, fold))  # fmt: skip
        folds.append(row)
        pooled["y"].append(fold["out_y"])
        pooled["p"].append(fold["out_p"])
        pooled["predicted"].append(classify(fold["out_p"], fold["threshold"]))
    y, p, predicted = (np.concatenate(pooled[key]) for key in ("y", "p", "predicted"))
    result = {"folds": folds, "pooled": slice_scores(y, p, None, predicted)}
    if "fold0_out_noise" in saved:  # the model's AUC where raw noise cannot separate
        noise = np.concatenate([saved[f"fold{i}_out_noise"] for i in range(k)])
        groups = np.concatenate([saved[f"fold{i}_out_g"] for i in range(k)])
        result["noise_matched"] = noise_matched_auc(y, p[:, MALIGNANT], groups, noise)
    return result


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


INVARIANCE_FIGURES = {
    "calls_changed": "calls changed", "median_abs_delta_malignant": "median abs Δp(m)",
    "recall_malignant": "malignant recall", "normal_as_malignant": "normal → malignant",
    "study_normal_as_malignant": "normal studies → malignant",
}  # fmt: skip


def invariance_table(results: list[dict]) -> str:
    """Per config and perturbation: FIGURES pooled as the mean over folds; then the model's
    malignant AUC beside the nuisance-only baseline's and the noise-matched one."""
    checked = [r for r in results if r["folds"][0].get("invariance", {}).get("perturbations")]
    head = ["config", "perturbation", *INVARIANCE_FIGURES.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in checked:
        for name in r["folds"][0]["invariance"]["perturbations"]:
            values = [f["invariance"]["perturbations"][name] for f in r["folds"]]
            cells = [f"{np.nanmean([v[c] for v in values]):.3f}" for c in INVARIANCE_FIGURES]
            lines.append(f"| {r['name']} | {name} | " + " | ".join(cells) + " |")
    head = ["config", "malignant AUC", "nuisance-only AUC", "nuisance-only AUC, the export's",
            "the export's + noise one scale up", "noise-matched AUC (patients m/other)",
            "worst calls changed", "worst normal → malignant", "worst malignant recall"]  # fmt: skip
    lines += ["", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        folds = r["folds"]
        nuisance = [
            [f.get("invariance", {}).get(f"{key}_auc", np.nan) for f in folds]
            for key in NUISANCE_BASELINES
        ]
        matched = r.get("noise_matched")
        worst = [f.get("invariance", {}).get("worst", {}) for f in folds]
        cells = [
            _mean_sd([f["auc_malignant"] for f in folds]),
            *(_mean_sd(v) if not np.isnan(v).all() else "–" for v in nuisance),
            f"{matched['auc']:.3f} ({matched['malignant_patients']:.0f}/"
            f"{matched['other_patients']:.0f})"
            if matched
            else "–",
            *(
                _mean_sd([w[f"worst_{c}"] for w in worst]) if all(worst) else "–"
                for c in ("calls_changed", "normal_as_malignant", "recall_malignant")
            ),
        ]
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
