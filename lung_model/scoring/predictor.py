"""What the scoring engine needs from a model, and how it turns a slice into model input.

`lung_model.scoring.inference.LoadedModel` (the champion from the MLflow registry, of either
family) fits `Predictor`; so does any object with the same attributes, which keeps the
engine testable and benchmarkable with the model passed in rather than reached for. A model
that has its own `prepare` (and `input_shape`, `reduce_to`) turns decoded slices into its
input itself; otherwise slices are prepared with `lung_model.imaging.preprocess.prepare` and
the preprocessing config shipped with the model (its `preprocess` attribute), so serving
runs exactly the steps training ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lung_model.settings import CLASSES

if TYPE_CHECKING:
    from lung_model.imaging.preprocess import PreprocessConfig

Prepare = Callable[[np.ndarray], np.ndarray]


class Predictor(Protocol):
    """A model that scores batches of prepared slices."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def data_version(self) -> str: ...

    @property
    def image_size(self) -> int: ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, size, size, 1) float32 to (N, 3) probabilities in `settings.CLASSES` order."""
        ...


def model_threshold(model: Predictor) -> float | None:
    """The malignant threshold fitted with the model (part of its decision rule, see
    `lung_model.training.metrics.classify`); None: the model decides by arg-max."""
    value = getattr(model, "malignant_threshold", None)
    return None if value is None else float(value)


def slice_class(model: Predictor, probabilities: Sequence[float] | np.ndarray) -> str:
    """The class the model's own decision rule gives one slice."""
    from lung_model.training.metrics import classify

    rule = classify(np.asarray([probabilities], dtype=np.float64), model_threshold(model))
    return CLASSES[int(rule[0])]


def study_threshold(model: Predictor, configured: float | None) -> float:
    """The malignant probability at which a slice makes its study malignant: the site's
    LUNG_MALIGNANT_THRESHOLD when set, else the model's own, else 0.5."""
    if configured is not None:
        return configured
    own = model_threshold(model)
    return 0.5 if own is None else own


def preprocess_for(model: Predictor) -> PreprocessConfig:
    """The preprocessing config shipped with the model (the defaults at its input size)."""
    from lung_model.imaging.preprocess import PreprocessConfig

    config = getattr(model, "preprocess", None)
    if not isinstance(config, PreprocessConfig):
        config = PreprocessConfig(image_size=model.image_size)
    return config


def preparer_for(model: Predictor) -> Prepare:
    """(H, W) gray in [0, 1] to the model's input: the model's own `prepare`, or image
    preprocessing with the model's config."""
    own: Prepare | None = getattr(model, "prepare", None)
    if own is not None:
        return own
    from lung_model.imaging.preprocess import prepare

    return partial(prepare, config=preprocess_for(model))


def input_shape_for(model: Predictor) -> tuple[int, ...]:
    """The shape of one prepared input (a square one-channel slice unless the model says)."""
    shape: tuple[int, ...] | None = getattr(model, "input_shape", None)
    return shape or (model.image_size, model.image_size, 1)


def reduce_to_for(model: Predictor) -> int | None:
    """How far a JPEG may be decoded down for this model (None: full resolution)."""
    if hasattr(model, "reduce_to"):
        value: int | None = model.reduce_to
        return value
    return preprocess_for(model).reduce_to
