"""The inference API: load a registered model once, predict batches of slices.

`LoadedModel.load()` resolves `models:/<name>@champion` to a fixed version (so an alias moved
mid-run cannot mix two models), loads the Keras model with `mlflow.keras.load_model` and the
preprocessing config logged with it, and predicts calibrated probabilities in CLASSES order.
`load_model` caches one loaded model per process, store and URI; the scorer, the DAG tasks
and the dashboard call it.
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.keras.html#mlflow.keras.load_model
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.imaging.preprocess import PreprocessConfig, load_file, prepare
from lung_model.platform.registry import champion_uri
from lung_model.scoring.predictor import slice_class
from lung_model.settings import CLASSES, Settings

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


class NoChampion(LookupError):
    """The requested model (by default the champion) does not exist or cannot be loaded."""


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, float]  # calibrated, CLASSES order, sums to 1
    predicted_class: str
    model_name: str
    model_version: str


class LoadedModel:
    """A registered model version with its preprocessing (fits `scoring.predictor.Predictor`)."""

    def __init__(
        self,
        keras_model: Any,
        preprocess: PreprocessConfig,
        name: str,
        version: str,
        data_version: str = "",
        malignant_threshold: float | None = None,
    ) -> None:
        self.keras_model = keras_model
        self.preprocess = preprocess
        self.name = name
        self.version = version
        self.data_version = data_version
        # the decision rule fitted with the model (lung_model.training.metrics.classify); None: arg-max
        self.malignant_threshold = malignant_threshold

    @property
    def image_size(self) -> int:
        return self.preprocess.image_size

    @classmethod
    def load(cls, settings: Settings, model_uri: str | None = None) -> LoadedModel:
        """Load `model_uri` (default `models:/<name>@champion`) pinned to one version."""
        import mlflow
        from mlflow.exceptions import MlflowException

        from lung_model.platform.tracking import configure_mlflow

        configure_mlflow(settings)
        model_uri = _pinned(model_uri or champion_uri(settings.model_name), settings)
        name, version = settings.model_name, model_uri
        if match := _VERSION_URI.match(model_uri):
            name, version = match["name"], match["version"]
        try:
            info = mlflow.models.get_model_info(model_uri)
            model = mlflow.keras.load_model(model_uri)
        except (MlflowException, OSError) as error:
            raise NoChampion(f"cannot load {model_uri}: {error}") from error
        metadata = info.metadata or {}
        preprocess = PreprocessConfig.from_dict(metadata.get("preprocess", {}))
        threshold = metadata.get("malignant_threshold")
        return cls(
            model,
            preprocess,
            name,
            version,
            str(metadata.get("data_version", "")),
            None if threshold is None else float(threshold),
        )

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        return prepare(gray, self.preprocess)

    def prepare_file(self, path: Path) -> np.ndarray:
        """A slice file to this model's input, decoded and prepared as in training."""
        return load_file(path, self.preprocess)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, size, size, 1) prepared slices -> (N, 3) calibrated probabilities."""
        if len(batch) == 0:
            return np.zeros((0, len(CLASSES)), dtype=np.float64)
        # a direct call in inference mode: no per-call tf.function retracing, any batch size
        return np.asarray(
            self.keras_model(np.asarray(batch, np.float32), training=False), dtype=np.float64
        )

    def predict_arrays(self, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Like `predict`, in chunks of `batch_size` (for large arrays)."""
        chunks = [self.predict(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
        return np.concatenate(chunks) if chunks else self.predict(batch)

    def predict_grays(self, grays: Sequence[np.ndarray]) -> list[Prediction]:
        """Decoded gray slices (`lung_model.imaging.images`) -> one Prediction each."""
        batch = np.stack([self.prepare(g) for g in grays]) if grays else np.zeros((0,))
        return [self._prediction(p) for p in self.predict_arrays(batch)]

    def predict_files(self, paths: Sequence[Path]) -> list[Prediction]:
        """Slice files -> one Prediction each (raises UnreadableImage on a bad file)."""
        batch = np.stack([self.prepare_file(p) for p in paths]) if paths else np.zeros((0,))
        return [self._prediction(p) for p in self.predict_arrays(batch)]

    def _prediction(self, probabilities: np.ndarray) -> Prediction:
        return Prediction(
            probabilities={c: float(p) for c, p in zip(CLASSES, probabilities, strict=True)},
            predicted_class=slice_class(self, probabilities),
            model_name=self.name,
            model_version=self.version,
        )

    def gradcam(self, gray: np.ndarray, class_name: str | None = None) -> np.ndarray:
        """Grad-CAM heatmap in [0, 1] over the prepared slice for `class_name` (default: the
        predicted class); shape (size, size). See `lung_model.scoring.gradcam`."""
        from lung_model.scoring.gradcam import gradcam

        x = self.prepare(gray)
        index = None if class_name is None else CLASSES.index(class_name)
        return gradcam(self.keras_model, x, index)


_LOADED: dict[tuple[str, str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(settings: Settings, model_uri: str | None = None) -> LoadedModel:
    """The model at `model_uri` (default: the champion), loaded once per process.

    An alias URI is resolved on every call, so a newly promoted champion is picked up by the
    next call while the version already loaded is reused."""
    uri = model_uri or champion_uri(settings.model_name)
    key = (settings.tracking_uri(), settings.model_name, _pinned(uri, settings))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = LoadedModel.load(settings, key[2])
        return _LOADED[key]


def _pinned(uri: str, settings: Settings) -> str:
    """`models:/name@alias` -> `models:/name/<version>`; other URIs unchanged."""
    match = _ALIAS_URI.match(uri)
    if not match:
        return uri
    from mlflow.exceptions import MlflowException

    from lung_model.platform.tracking import configure_mlflow

    client = configure_mlflow(settings)
    try:
        version = client.get_model_version_by_alias(match["name"], match["alias"]).version
    except MlflowException as error:
        raise NoChampion(f"no version of {match['name']} has alias '{match['alias']}'") from error
    return f"models:/{match['name']}/{version}"
