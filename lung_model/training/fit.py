"""Fit the CNN: class weights, fixed seeds, temperature scaling, a malignant threshold.

The default, chosen by grouped cross-validation (`bench/bench_model_selection.py`), trains
on lung-field crops (`lung_model.imaging.crop`) at 128 px for a fixed number of epochs and keeps
the last weights (on ~50 training patients, validation macro-F1 swings too much from epoch
to epoch for early stopping to pick well), and calls a slice malignant from a calibrated
probability of 0.2 (recall first; see `lung_model.training.metrics.classify`). Options that did
not beat it there stay available: augmentation (`lung_model.training.augment`, on training batches
only, never inside the model), mixup, an EMA of the weights (keras `use_ema` and
`SwapEMAWeights`), early stopping on validation macro-F1, an ensemble of networks trained
from different seeds, and a malignant threshold fitted on validation (the highest that
keeps `malignant_recall` of its malignant slices). The validation part fits the
temperature; temperature and threshold ship with the model.
See https://keras.io/api/models/model_training_apis/
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.data.split import Split
from lung_model.imaging.acquisition import HarmoniseConfig
from lung_model.imaging.preprocess import PreprocessConfig, load_files
from lung_model.imaging.preprocess import prepare as prepare_input
from lung_model.settings import CLASSES
from lung_model.training.calibration import (
    apply_temperature,
    fit_malignant_threshold,
    fit_temperature,
)
from lung_model.training.reacquire import reacquired_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """The real configuration is the default; tests shrink it."""

    # chosen by grouped 5-fold cross-validation over the train + validation patients
    # (bench/bench_model_selection.py; the figures are in the README)
    epochs: int = 25
    image_size: int = 128
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 5e-4
    patience: int = 8
    min_epochs: int = 5
    widths: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    norm: str = "batch"  # batch or group normalisation
    label_smoothing: float = 0.0
    ema: float = 0.0  # momentum of a weight average that is validated and kept (0: off)
    augment: bool = False  # geometric / gamma augmentation (did not help in cross-validation)
    mixup: float = 0.0  # Beta(a, a) mixing of training slices (0: off)
    crop: str = "lungs"  # lung_model.imaging.crop target: lungs, body or none
    decode_size: int = 0  # JPEGs decoded down to this longer side (0: image_size)
    # every slice brought to one common acquisition first (full-resolution decode; issue 19)
    harmonise: bool = False
    # re-acquired copies of every training slice (`lung_model.training.reacquire`), one of
    # which, or the slice itself, each epoch draws (0: none, as every model logged before)
    acquisition_copies: int = 0
    early_stopping: bool = False  # on validation macro-F1; off: train all epochs, keep the last
    # the decision rule: malignant at this calibrated probability (None: arg-max), unless
    # malignant_recall > 0, which fits the threshold on validation for that recall instead
    malignant_threshold: float | None = 0.2
    malignant_recall: float = 0.0
    members: int = 1  # networks trained with different seeds whose logits are averaged
    study_statistic: str = "any"  # lung_model.training.study_rule.STATISTICS
    seed: int = 42
    bootstrap_rounds: int = 1000

    @classmethod
    def tiny(cls) -> TrainConfig:
        """Seconds on the CPU: for tests and smoke runs, never for a real model."""
        return cls(
            epochs=2, image_size=32, batch_size=8, patience=1, min_epochs=0,
            widths=(4, 8), bootstrap_rounds=20,
        )  # fmt: skip

    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(
            image_size=self.image_size,
            crop=self.crop,
            decode_size=self.decode_size,
            harmonise=HarmoniseConfig() if self.harmonise else None,
        )

    def params(self) -> dict[str, Any]:
        values = asdict(self)
        values["widths"] = ",".join(str(w) for w in self.widths)
        return values


@dataclass
class Part:
    """The preprocessed slices of one part of the split."""

    x: np.ndarray  # (N, size, size, 1) float32
    y: np.ndarray  # (N,) class index
    groups: np.ndarray  # (N,) pseudo-patient id
    paths: list[str] = field(default_factory=list)


def load_part(
    split: Split, part: str, data_dir: Path, config: PreprocessConfig, progress: bool = False
) -> Part:
    paths = split.paths(part)
    x = load_files([data_dir / p for p in paths], config, progress)
    y = np.array([CLASSES.index(split.label[p]) for p in paths], dtype=np.int64)
    return Part(x, y, np.array([split.group[p] for p in paths]), paths)


def reacquired_copies(paths: list[str], data_dir: Path, config: TrainConfig) -> np.ndarray | None:
    """The model inputs of `config.acquisition_copies` re-acquired copies of each slice
    (decoded at full resolution, as the copies are exported anew), or None without."""
    from lung_model.imaging.images import read_gray

    if not config.acquisition_copies:
        return None
    preprocess = config.preprocess()
    grays = (read_gray(data_dir / p).gray for p in paths)
    shape = (preprocess.image_size, preprocess.image_size, 1)
    prepare = partial(prepare_input, config=preprocess)
    return reacquired_inputs(grays, config.acquisition_copies, prepare, shape)


def class_weights(y: np.ndarray) -> dict[int, float]:
    """'Balanced' weights: n / (classes * count), so each class weighs the same in the loss."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(float)
    return {i: float(len(y) / (len(CLASSES) * c)) if c else 0.0 for i, c in enumerate(counts)}


def _batches(
    part: Part, config: TrainConfig, training: bool, copies: np.ndarray | None = None
) -> Any:
    """Training: augmented, class-weighted, shuffled batches (each slice or one of its
    re-acquired `copies` per epoch); validation: plain arrays."""
    from lung_model.training.augment import AugmentedSlices

    one_hot = np.eye(len(CLASSES), dtype=np.float32)[part.y]
    if not training:
        return (part.x, one_hot)
    weights = class_weights(part.y)
    sample_weight = np.array([weights[int(c)] for c in part.y], dtype=np.float32)
    return AugmentedSlices(
        part.x, one_hot, sample_weight, config.batch_size, config.seed, config.augment,
        config.mixup, copies,
    )  # fmt: skip


def predict_logits(network: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.asarray(network.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


@dataclass
class Fitted:
    network: Any  # keras.Model returning logits
    temperature: float
    history: dict[str, list[float]]
    best_epoch: int
    malignant_threshold: float | None = (
        None  # the decision rule, lung_model.training.metrics.classify
    )


def _fit_one(
    config: TrainConfig, seed: int, train: Part, val: Part, show: bool, copies: np.ndarray | None
) -> tuple[Any, dict[str, list[float]], int]:
    """One network from scratch: (keras model, per-epoch curves, epoch whose weights it has)."""
    import keras

    from lung_model.training.network import build_network

    keras.utils.set_random_seed(seed)
    network = build_network(config.image_size, config.widths, config.dropout, config.norm)
    steps = max(1, -(-len(train.y) // config.batch_size)) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.05)
    network.compile(
        optimizer=keras.optimizers.AdamW(
            schedule,
            weight_decay=config.weight_decay,
            use_ema=config.ema > 0,
            ema_momentum=config.ema or 0.99,
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.F1Score(average="macro", name="macro_f1"),
        ],
    )
    callbacks: list[Any] = []
    if config.ema > 0:  # validate (and keep) the averaged weights
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_macro_f1",
                mode="max",
                patience=config.patience,
                start_from_epoch=config.min_epochs,
                restore_best_weights=True,
            )
        )
    history = network.fit(
        _batches(train, replace(config, seed=seed), training=True, copies=copies),
        validation_data=_batches(val, config, training=False),
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=1 if show else 2,
    )
    curves = {k: [float(v) for v in values] for k, values in history.history.items()}
    scores = curves.get("val_macro_f1", [0.0])
    if not config.early_stopping:
        return network, curves, len(scores)
    first = config.min_epochs if len(scores) > config.min_epochs else 0
    return network, curves, int(np.argmax(scores[first:]) + first + 1)


def fit(
    config: TrainConfig,
    train: Part,
    val: Part,
    progress: bool | None = None,
    copies: np.ndarray | None = None,
) -> Fitted:
    """Train `config.members` networks from scratch on `train` (seeds seed, seed + 1, ...),
    average their logits, fit the temperature and the malignant threshold on `val`.
    `copies`: the training slices' re-acquired model inputs (`reacquired_copies`)."""
    import tensorflow as tf

    from lung_model.training.network import ensemble

    # Only possible before TensorFlow's first op; a process that already ran one (a test
    # session, a DAG worker that scored) keeps its setting.
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_inter_op_parallelism_threads(2)
    show = sys.stderr.isatty() if progress is None else progress
    fitted = [
        _fit_one(config, config.seed + i, train, val, show, copies) for i in range(config.members)
    ]
    network = ensemble([f[0] for f in fitted], config.widths, config.dropout, config.norm)
    curves, best_epoch = fitted[0][1], fitted[0][2]
    val_logits = predict_logits(network, val.x)
    temperature = fit_temperature(val_logits, val.y)
    threshold = config.malignant_threshold
    if config.malignant_recall > 0:
        threshold = fit_malignant_threshold(
            apply_temperature(val_logits, temperature),
            val.y,
            config.malignant_recall,
            CLASSES.index("malignant"),
        )
    log.info(
        "%d network(s), epoch %d of %d kept, temperature %.3f, malignant threshold %s",
        config.members, best_epoch, len(curves.get("loss", [])), temperature, threshold,
    )  # fmt: skip
    return Fitted(network, temperature, curves, best_epoch, threshold)
