"""The model families the training job can fit, behind one shape: `fit_family` loads the
split's inputs for the family, fits on train, calibrates and fits the decision rules on
validation, and returns how to predict and how to log the model.

`cnn` (`TrainConfig`): the Keras network on prepared lung-field crops (`training.fit`).
`features` (`FeatureModelConfig`): LightGBM on lung-field features (`training.feature_model`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.data.split import Split
from lung_model.imaging.acquisition import (
    Acquisition,
    HarmoniseConfig,
    coarse_noise_level,
    harmonise,
    measure,
)
from lung_model.imaging.features import FeatureConfig, LesionPoint, seen_crop
from lung_model.imaging.images import read_gray
from lung_model.imaging.preprocess import prepare
from lung_model.settings import CLASSES
from lung_model.training.calibration import apply_temperature
from lung_model.training.feature_model import (
    FeatureModelConfig,
    augmented_features,
    features_of,
    fit_feature_model,
)
from lung_model.training.fit import (
    Part,
    TrainConfig,
    fit,
    load_part,
    predict_logits,
    reacquired_copies,
)
from lung_model.training.study_rule import StudyRule, fit_study_rule

PARTS = ("train", "val", "test")
ModelConfig = TrainConfig | FeatureModelConfig
# a slice's acquisition measurements as decoded and as the model sees it (`FamilyFit.seen`),
# and the noise one scale up of what the model sees (`coarse_noise_level`)
Measured = tuple[Acquisition, Acquisition, float]


@dataclass
class FamilyFit:
    parts: dict[str, Part]  # the model inputs of train, val and test
    predict: Callable[[np.ndarray], np.ndarray]  # inputs -> calibrated probabilities
    temperature: float
    malignant_threshold: float | None
    study_rule: StudyRule
    log_model: Callable[[dict[str, Any]], str]  # metadata -> model URI
    # a decoded full-resolution slice -> the model's input, as serving prepares it (the
    # acquisition-invariance check prepares perturbed slices with it)
    prepare: Callable[[np.ndarray], np.ndarray]
    # the slice as the model sees it before its own steps: harmonised, or None (as decoded)
    seen: Callable[[np.ndarray], np.ndarray] | None = None
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch curves
    best_epoch: int = 0
    # the parts' inputs are `prepare` of full-resolution slices (the CNN's decode down)
    prepared_at_full_resolution: bool = False
    # the train then val slices' measurements, taken as they were decoded to fit (else None)
    fit_measured: list[Measured] | None = None


def _cnn(config: TrainConfig, split: Split, data_dir: Path, progress: bool) -> FamilyFit:
    from lung_model.training.network import calibrated
    from lung_model.training.served import log_cnn

    preprocess = config.preprocess()
    parts = {p: load_part(split, p, data_dir, preprocess, progress) for p in PARTS}
    copies = reacquired_copies(parts["train"].paths, data_dir, config)
    fitted = fit(config, parts["train"], parts["val"], progress, copies)

    def predict(x: np.ndarray) -> np.ndarray:
        return apply_temperature(predict_logits(fitted.network, x), fitted.temperature)

    val = parts["val"]
    slice_threshold = 0.5 if fitted.malignant_threshold is None else fitted.malignant_threshold
    rule = fit_study_rule(
        config.study_statistic, val.y, predict(val.x), val.groups, slice_threshold
    )
    example = parts["test"].x[:1]
    network = calibrated(fitted.network, fitted.temperature)
    return FamilyFit(
        parts,
        predict,
        fitted.temperature,
        fitted.malignant_threshold,
        rule,
        lambda metadata: log_cnn(
            network, example, {"preprocess": preprocess.to_dict(), **metadata}
        ),
        partial(prepare, config=preprocess),
        _seen(preprocess.harmonise),
        fitted.history,
        fitted.best_epoch,
    )


def _seen(common: HarmoniseConfig | None) -> Callable[[np.ndarray], np.ndarray] | None:
    return None if common is None else partial(harmonise, config=common)


def _seen_crop(features: FeatureConfig) -> Callable[[np.ndarray], np.ndarray]:
    """The feature family's inputs: the lung-field crop its features read."""
    return partial(seen_crop, config=features)


def _measuring(into: list[Measured]) -> Callable[[np.ndarray, np.ndarray], None]:
    """Appends a slice's measurements `into`: as decoded, and as the features saw it (the
    lung-field crop they were read from, `features_of`' `each_crop`, not made again)."""

    def measured(gray: np.ndarray, crop: np.ndarray) -> None:
        into.append((measure(gray), measure(crop), coarse_noise_level(crop)))

    return measured


def load_feature_part(
    split: Split,
    part: str,
    data_dir: Path,
    config: FeatureModelConfig,
    progress: bool = False,
    points: dict[str, LesionPoint] | None = None,
    measured: list[Measured] | None = None,
) -> Part:
    """The features of one part's slices, decoded at full resolution as serving decodes them;
    those with a lesion `points` entry measured at the mark (training only); each slice's
    acquisition appended to `measured` when given."""
    from tqdm import tqdm

    paths = split.paths(part)
    grays: Iterator[np.ndarray] = (
        read_gray(data_dir / p).gray for p in tqdm(paths, desc=part, disable=not progress)
    )
    marked = None if points is None else [points.get(p) for p in paths]
    each_crop = None if measured is None else _measuring(measured)
    x = features_of(grays, config.features, marked, each_crop)
    y = np.array([CLASSES.index(split.label[p]) for p in paths], dtype=np.int64)
    return Part(x, y, np.array([split.group[p] for p in paths]), paths)


def _features(
    config: FeatureModelConfig,
    split: Split,
    data_dir: Path,
    progress: bool,
    points: dict[str, LesionPoint] | None = None,
) -> FamilyFit:
    from lung_model.training.served import log_feature_model

    marks = points if config.mark_candidates and points else None  # never on test slices
    measured: list[Measured] = []  # train, then val (the order `split.paths` gives)
    parts = {}
    for p in PARTS:
        fitting = p != "test"  # marks and measurements: of the slices fitted on only
        parts[p] = load_feature_part(
            split,
            p,
            data_dir,
            config,
            progress,
            points=marks if fitting else None,
            measured=measured if fitting else None,
        )
    augmented = None
    if config.augment:
        both = [*parts["train"].paths, *parts["val"].paths]
        labels = np.concatenate([parts["train"].y, parts["val"].y])
        groups = np.concatenate([parts["train"].groups, parts["val"].groups])
        grays = (read_gray(data_dir / p).gray for p in both)
        marked = None if marks is None else [marks.get(p) for p in both]
        x = augmented_features(grays, config, marked)
        augmented = Part(
            x,
            np.repeat(labels, config.augment),
            np.repeat(groups, config.augment),
            [p for p in both for _ in range(config.augment)],  # each copy's slice
        )
    model = fit_feature_model(config, parts["train"], parts["val"], augmented)
    example = data_dir / parts["test"].paths[0]
    metadata = {"features": config.features.to_dict()}
    return FamilyFit(
        parts,
        model.predict,
        model.temperature,
        model.malignant_threshold,
        model.study_rule,
        lambda extra: log_feature_model(model, example, {**metadata, **extra}),
        model.prepare,
        _seen_crop(config.features),
        prepared_at_full_resolution=True,
        fit_measured=measured,
    )


def fit_family(
    config: ModelConfig,
    split: Split,
    data_dir: Path,
    progress: bool,
    points: dict[str, LesionPoint] | None = None,
) -> FamilyFit:
    """`points`: reviewers' lesion marks of training slices, which the feature family
    measures its lesion candidate at when `FeatureModelConfig.mark_candidates`."""
    if isinstance(config, FeatureModelConfig):
        return _features(config, split, data_dir, progress, points)
    return _cnn(config, split, data_dir, progress)
