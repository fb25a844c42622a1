"""The lung-field feature model: texture and nodule-candidate features of the lung field
(`lung_model.imaging.features`), gradient-boosted trees (LightGBM), temperature scaling,
a malignant threshold and a study rule, all fitted here and shipped as one object.

`SliceFeatureModel` is what serving loads (inside an MLflow pyfunc, `lung_model.training.
served`): `prepare` turns a decoded slice into its feature vector (run by the scorer's decode
threads), `predict` turns a batch of feature vectors into calibrated probabilities and
`contributions` gives each feature's exact TreeSHAP share of one slice's malignant score
(LightGBM's `pred_contrib`). Temperature, threshold and study rule are fitted on
out-of-fold scores of the training patients. Training is deterministic: one thread, fixed seed,
`deterministic=True`. See https://lightgbm.readthedocs.io/en/stable/Parameters.html and
https://lightgbm.readthedocs.io/en/stable/pythonapi/lightgbm.LGBMClassifier.html
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np

from lung_model.imaging.acquisition import NOISE_RANGE, HarmoniseConfig
from lung_model.imaging.features import (
    FeatureConfig,
    LesionPoint,
    feature_names,
    features_and_crop,
    slice_features,
)
from lung_model.settings import CLASSES
from lung_model.training.calibration import (
    apply_temperature,
    fit_malignant_threshold,
    fit_temperature,
)
from lung_model.training.fit import Part
from lung_model.training.reacquire import reacquired_inputs
from lung_model.training.stability import stable_columns
from lung_model.training.study_rule import StudyRule, fit_study_rule

MALIGNANT = CLASSES.index("malignant")


@dataclass(frozen=True)
class FeatureModelConfig:
    """The real configuration is the default (chosen by grouped cross-validation,
    `bench/bench_model_selection.py`); tests shrink it."""

    family: str = field(default="features", init=False)
    # every slice brought to one common acquisition first, and two randomly re-acquired copies
    # of each training slice (`augment`): the release's export fingerprint (malignant
    # patients exported with half the noise) is what the unharmonised model read; harmonised,
    # a smoothed or re-windowed normal scan is called malignant far less often, for a lower
    # but still >= 0.95 malignant AUC in grouped cross-validation (docs/MODEL.md, run 7).
    # Harmonised where the features read, the lung-field crop (`harmonise_at="crop"`: its
    # tissue levels from block means, blurred 0.75 crop px, noised to 0.008): harmonising
    # the whole slice (run 11's default) left the export's noise in the crop its resize
    # made (the export's measurements of it tell malignant slices apart at AUC 0.918; here
    # 0.619), at the same malignant AUC (0.977), with fewer normal slices called malignant
    # at the same recall and recall >= 0.95 under every perturbation (docs/MODEL.md, run 13).
    # The lung masks found on block means (`mask_averaged`): on the noisiest exports (27
    # normal slices, 1 benign) every 4th pixel lost the lung field, which smoothing or another
    # matrix found again (the box moved for 40 normal slices when smoothed; none now), and
    # at the rule 6.4% of normal slices and 7/25 normal studies are called malignant in CV
    # instead of 11.4% and 10/25, with 24/24 malignant studies (docs/MODEL.md, run 14)
    features: FeatureConfig = field(
        default_factory=lambda: FeatureConfig(
            harmonise=HarmoniseConfig(blur=0.75, noise=0.008, levels_averaged=True),
            harmonise_at="crop",
            mask_averaged=True,
        )
    )
    n_estimators: int = 200
    max_depth: int = 3
    num_leaves: int = 8  # 2 ** max_depth: depth, not leaf count, limits the trees
    learning_rate: float = 0.1
    min_child_samples: int = 20
    seed: int = 0
    # chosen by grouped cross-validation (docs/MODEL.md): at 0.98 the out-of-fold threshold
    # fell to ~0.05 and called 23% of normal slices malignant for no malignant study more;
    # `any` kept 23/24 malignant and called 2/25 normal studies malignant (share/max/top3:
    # 14-21/25, their cut must keep one malignant patient with normal-looking scores). On the
    # crop-harmonised default, 0.93 instead of 0.95 kept held-out recall at 0.973 and 24/24
    # malignant studies and called 11.4% of normal slices and 10/25 normal studies malignant
    # instead of 13.9% and 13/25; 0.90 lost a malignant study (run 13)
    malignant_recall: float = 0.93  # the malignant threshold keeps this share out of fold
    calibration_folds: int = 5  # grouped folds whose out-of-fold scores fit the rules
    study_statistic: str = "any"  # lung_model.training.study_rule.STATISTICS
    # copies of every training slice under a random other acquisition
    # (`lung_model.imaging.acquisition.random_acquisition`) the trees also learn from, and
    # the range of their contrast factor (above 1 clipped, as a narrower window saturates).
    # Two copies at x0.6..1.5 instead of one at x0.6..1.3: in grouped CV a narrower window
    # (x1.3) calls 23% of normal slices malignant instead of 40%, the worst perturbation 27%
    # instead of 40%, at malignant AUC 0.978 and recall >= 0.95 under every perturbation;
    # x0.6..1.8 was more invariant still but let recall fall to 0.949 (docs/MODEL.md, run 9)
    augment: int = 2
    augment_contrast: tuple[float, float] = (0.6, 1.5)
    # the range the copies' noise level is drawn from (`NOISE_RANGE`, 0.0015..0.012)
    augment_noise: tuple[float, float] = NOISE_RANGE
    # the trees read only the features whose ICC(1,1) over each training slice and its
    # re-acquired copies reaches this floor (`lung_model.training.stability`); 0 reads all
    stable_floor: float = 0.0
    bootstrap_rounds: int = 1000
    # training only: on a slice a reviewer marked 'lesion', nod_largest and nod_top3 measure
    # the candidate at the mark, not the largest (`slice_features`' point); serving has no
    # marks. Off: with simulated marks the grouped CV bench found no gain (docs/MODEL.md,
    # run 6, features-marks-exclude-candidates)
    mark_candidates: bool = False

    @classmethod
    def tiny(cls) -> FeatureModelConfig:
        """Seconds on the CPU: for tests and smoke runs, never for a real model."""
        return cls(
            n_estimators=20,
            min_child_samples=2,
            calibration_folds=2,
            bootstrap_rounds=20,
            augment=0,  # the harmonised path, without the augmentation's extra features
        )

    def params(self) -> dict[str, Any]:
        values = {k: v for k, v in asdict(self).items() if k != "features"}
        if self.augment_noise == NOISE_RANGE:  # as runs were logged before it existed
            del values["augment_noise"]
        if not self.stable_floor:
            del values["stable_floor"]
        return {**values, **{f"features_{k}": v for k, v in self.features.to_dict().items()}}


class SliceFeatureModel:
    """Decoded slice -> features -> calibrated probabilities -> the model's decision rules."""

    family = "features"
    # the feature columns the trees read (`FeatureModelConfig.stable_floor`); None: all (and
    # what a model pickled before the setting existed reads)
    columns: tuple[int, ...] | None = None

    def __init__(
        self,
        features: FeatureConfig,
        booster: Any,
        temperature: float,
        malignant_threshold: float | None,
        study_rule: StudyRule,
        columns: tuple[int, ...] | None = None,
    ) -> None:
        self.features = features
        self.booster = booster  # a fitted lightgbm.LGBMClassifier
        self.temperature = temperature
        self.malignant_threshold = malignant_threshold
        self.study_rule = study_rule
        self.columns = columns

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.features)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (len(self.feature_names),)

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """A decoded gray slice (full resolution, [0, 1]) to the model's input."""
        return slice_features(gray, self.features)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw multiclass scores (log-odds space) of a (N, features) batch."""
        if len(x) == 0:
            return np.zeros((0, len(CLASSES)))
        read = _columns(np.asarray(x), self.columns)
        return np.asarray(self.booster.booster_.predict(read, raw_score=True), dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, features) -> (N, 3) calibrated probabilities in CLASSES order."""
        return apply_temperature(self.logits(np.asarray(x, np.float32)), self.temperature)

    def contributions(self, x: np.ndarray, class_name: str = "malignant") -> np.ndarray:
        """Each feature's exact TreeSHAP contribution to one slice's raw score for
        `class_name` (the last entry is the expected value): (features + 1,); a feature the
        trees do not read contributes 0."""
        row = _columns(np.asarray(x, np.float32).reshape(1, -1), self.columns)
        values = np.asarray(self.booster.booster_.predict(row, pred_contrib=True))[0]
        width = row.shape[1] + 1
        index = CLASSES.index(class_name)
        read = np.asarray(values[index * width : (index + 1) * width], dtype=np.float64)
        if self.columns is None:
            return read
        every = np.zeros(len(self.feature_names) + 1)
        every[[*self.columns, -1]] = read
        return every


def _columns(x: np.ndarray, columns: tuple[int, ...] | None) -> np.ndarray:
    """The columns of a (N, features) batch that trees fitted on `columns` read."""
    return x if columns is None else x[:, list(columns)]


def features_of(
    grays: Iterable[np.ndarray],
    config: FeatureConfig,
    points: Iterable[LesionPoint | None] | None = None,
    each_crop: Callable[[np.ndarray, np.ndarray], object] | None = None,
) -> np.ndarray:
    """(N, features) float32 for decoded slices (consumed one at a time); `points`: each
    slice's reviewer lesion mark or None (training only, `slice_features`); `each_crop`:
    given each slice and the lung-field crop its features were read from (`seen_crop`'s
    gray), in order."""
    width = len(feature_names(config))
    marks = repeat(None) if points is None else points
    rows = []
    for gray, point in zip(grays, marks, strict=False):
        values, crop = features_and_crop(gray, config, point)
        if each_crop is not None:
            each_crop(gray, crop.gray)
        rows.append(values)
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, width), np.float32)


def augmented_features(
    grays: Iterable[np.ndarray],
    config: FeatureModelConfig,
    points: Iterable[LesionPoint | None] | None = None,
) -> np.ndarray:
    """(N * config.augment, features): each slice's features under `config.augment` random
    other acquisitions (`lung_model.training.reacquire`), slice-major; `points` as in
    `features_of` (moved with a copy's smaller matrix)."""
    width = len(feature_names(config.features))
    if points is None:
        prepare = partial(slice_features, config=config.features)
        return reacquired_inputs(
            grays, config.augment, prepare, (width,), config.augment_contrast, config.augment_noise
        )
    blocks = [
        reacquired_inputs(
            [g], config.augment, partial(_at_mark, config=config.features, point=p, shape=g.shape),
            (width,), config.augment_contrast, config.augment_noise,
        )
        for g, p in zip(grays, points, strict=False)
    ]  # fmt: skip
    return np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32)


def _at_mark(
    copy: np.ndarray, config: FeatureConfig, point: LesionPoint | None, shape: tuple[int, ...]
) -> np.ndarray:
    """A re-acquired copy's features with the original slice's mark moved onto the copy."""
    return slice_features(copy, config, point and point.scaled(shape, copy.shape))


def _booster(config: FeatureModelConfig) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        objective="multiclass",
        n_estimators=config.n_estimators,
        max_depth=config.max_depth,
        num_leaves=config.num_leaves,
        learning_rate=config.learning_rate,
        min_child_samples=config.min_child_samples,
        class_weight="balanced",
        random_state=config.seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )


def out_of_fold_logits(
    config: FeatureModelConfig,
    part: Part,
    augmented: Part | None = None,
    columns: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Each slice's raw scores from trees that never saw its patient (grouped k-fold); the
    `augmented` copies of the fitting folds' patients join their trees' data; trees read
    only `columns` when given."""
    from sklearn.model_selection import StratifiedGroupKFold

    if columns is not None:
        part = replace(part, x=_columns(part.x, columns))
        if augmented is not None:
            augmented = replace(augmented, x=_columns(augmented.x, columns))
    folds = StratifiedGroupKFold(config.calibration_folds, shuffle=True, random_state=config.seed)
    logits = np.zeros((len(part.y), len(CLASSES)))
    for fit_rows, held_rows in folds.split(part.x, part.y, part.groups):
        x, y = part.x[fit_rows], part.y[fit_rows]
        if augmented is not None and len(augmented.y):
            extra = np.isin(augmented.groups, part.groups[fit_rows])
            x, y = np.concatenate([x, augmented.x[extra]]), np.concatenate([y, augmented.y[extra]])
        booster = _booster(config).fit(x, y)
        logits[held_rows] = booster.booster_.predict(part.x[held_rows], raw_score=True)
    return logits


def fit_feature_model(
    config: FeatureModelConfig, train: Part, val: Part, augmented: Part | None = None
) -> SliceFeatureModel:
    """Fit the trees on the train and validation patients together; fit the temperature, the
    malignant threshold and the study rule on their out-of-fold scores (grouped k-fold, so
    every patient is scored by trees that never saw it). Trees are cheap, so the rules are
    fitted on all ~65 training patients rather than the ~13 of the validation part alone.
    `augmented`: training slices under other acquisitions (`augmented_features`; each
    copy's path is its slice's), which the trees learn from but the rules are never fitted
    on; with `config.stable_floor`, the features whose values they keep (`stable_columns`)
    are the only ones the trees read. The test split is never touched."""
    both = Part(
        np.concatenate([train.x, val.x]),
        np.concatenate([train.y, val.y]),
        np.concatenate([train.groups, val.groups]),
        [*train.paths, *val.paths],
    )
    columns = None
    if config.stable_floor and augmented is not None and len(augmented.y):
        columns = stable_columns(both, augmented, config.stable_floor)
    logits = out_of_fold_logits(config, both, augmented, columns)
    temperature = fit_temperature(logits, both.y)
    probabilities = apply_temperature(logits, temperature)
    threshold = fit_malignant_threshold(probabilities, both.y, config.malignant_recall, MALIGNANT)
    rule = fit_study_rule(config.study_statistic, both.y, probabilities, both.groups, threshold)
    x, y = both.x, both.y
    if augmented is not None and len(augmented.y):
        x, y = np.concatenate([x, augmented.x]), np.concatenate([y, augmented.y])
    names = feature_names(config.features)
    read = names if columns is None else [names[i] for i in columns]
    booster = _booster(config).fit(_columns(x, columns), y, feature_name=read)
    return SliceFeatureModel(config.features, booster, temperature, threshold, rule, columns)
