"""The inference API: load a registered model once, predict batches of slices.

`LoadedModel.load()` resolves `models:/<name>@champion` to a fixed version (so an alias moved
mid-run cannot mix two models), loads either model family (the CNN with
`mlflow.keras.load_model`, the feature model as a python-function model) with the
preprocessing and decision rules logged with it (and the range of acquisition measurements
it learned from, for the scoring guard, when it shipped one), and predicts calibrated probabilities in
CLASSES order. A CNN logged before families had a name loads as before.
`load_model` caches one loaded model per process, store and URI; the scorer, the DAG tasks
and the dashboard call it.
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.keras.html#mlflow.keras.load_model
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.imaging.images import read_gray
from lung_model.imaging.preprocess import PreprocessConfig, prepare
from lung_model.platform.registry import champion_uri
from lung_model.scoring.predictor import slice_class
from lung_model.settings import CLASSES, Settings
from lung_model.training.study_rule import StudyRule

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
    """A registered model version of either family, with its preprocessing and decision
    rules (fits `scoring.predictor.Predictor`).

    `network` is the calibrated Keras model (family `cnn`, which prepares slices with
    `preprocess`) or a `lung_model.training.feature_model.SliceFeatureModel` (family
    `features`, which prepares them itself, from the full-resolution slice)."""

    def __init__(
        self,
        network: Any,
        name: str,
        version: str,
        data_version: str = "",
        malignant_threshold: float | None = None,
        study_rule: StudyRule | None = None,
        preprocess: PreprocessConfig | None = None,
        acquisition_range: dict[str, list[float]] | None = None,
    ) -> None:
        self.network = network
        self.family = str(getattr(network, "family", "cnn"))
        self.preprocess = preprocess or PreprocessConfig()
        self.name = name
        self.version = version
        self.data_version = data_version
        # the decision rules fitted with the model (training.metrics.classify for slices,
        # training.study_rule for studies); no threshold: arg-max
        self.malignant_threshold = malignant_threshold
        self.study_rule = study_rule or StudyRule()
        # the acquisition measurements of its training slices, [low, high] each (the scoring
        # guard, `scoring.guard`); None: logged before models shipped one, unguarded
        self.acquisition_range = acquisition_range or None

    @property
    def keras_model(self) -> Any:
        return self.network if self.family == "cnn" else None

    @property
    def image_size(self) -> int:
        return self.preprocess.image_size

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.family == "cnn":
            return (self.image_size, self.image_size, 1)
        shape: tuple[int, ...] = self.network.input_shape
        return shape

    @property
    def reduce_to(self) -> int | None:
        """How far a JPEG may be decoded down for this model (None: full resolution)."""
        return self.preprocess.reduce_to if self.family == "cnn" else None

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
            metadata = info.metadata or {}
            if metadata.get("family") == "features":
                from lung_model.training.served import unwrap_feature_model

                network = unwrap_feature_model(mlflow.pyfunc.load_model(model_uri))
            else:  # the CNN, including models logged before families had a name
                network = mlflow.keras.load_model(model_uri)
        except (MlflowException, OSError) as error:
            raise NoChampion(f"cannot load {model_uri}: {error}") from error
        threshold = metadata.get("malignant_threshold")
        return cls(
            network,
            name,
            version,
            str(metadata.get("data_version", "")),
            None if threshold is None else float(threshold),
            StudyRule.from_dict(metadata.get("study_rule")),
            PreprocessConfig.from_dict(metadata["preprocess"])
            if "preprocess" in metadata
            else None,
            metadata.get("acquisition_range"),
        )

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """A decoded gray slice to this model's input, as in training."""
        if self.family == "cnn":
            return prepare(gray, self.preprocess)
        return np.asarray(self.network.prepare(gray))

    @property
    def process_prepare(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The feature model's preparation as a picklable function, for the scorer's worker
        processes (`scoring.decode_pool`: it holds the GIL); None for the CNN (threads)."""
        if self.family == "cnn":
            return None
        from lung_model.imaging.features import slice_features

        return partial(slice_features, config=self.network.features)

    def prepare_file(self, path: Path) -> np.ndarray:
        """A slice file to this model's input, decoded and prepared as in training."""
        return self.prepare(read_gray(path, reduce_to=self.reduce_to).gray)

    def prepare_files(self, paths: Sequence[Path]) -> np.ndarray:
        rows = [self.prepare_file(p) for p in paths]
        return np.stack(rows) if rows else np.zeros((0, *self.input_shape), np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A batch of prepared inputs -> (N, 3) calibrated probabilities."""
        if len(batch) == 0:
            return np.zeros((0, len(CLASSES)), dtype=np.float64)
        if self.family != "cnn":
            return np.asarray(self.network.predict(batch), dtype=np.float64)
        # a direct call in inference mode: no per-call tf.function retracing, any batch size
        return np.asarray(
            self.network(np.asarray(batch, np.float32), training=False), dtype=np.float64
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
        return [self._prediction(p) for p in self.predict_arrays(self.prepare_files(paths))]

    def _prediction(self, probabilities: np.ndarray) -> Prediction:
        return Prediction(
            probabilities={c: float(p) for c, p in zip(CLASSES, probabilities, strict=True)},
            predicted_class=slice_class(self, probabilities),
            model_name=self.name,
            model_version=self.version,
        )

    def gradcam(self, gray: np.ndarray, class_name: str | None = None) -> np.ndarray:
        """Grad-CAM heatmap in [0, 1] over the prepared slice for `class_name` (default: the
        predicted class); shape (size, size). CNN only. See `lung_model.scoring.gradcam`."""
        from lung_model.scoring.gradcam import gradcam

        if self.family != "cnn":
            raise TypeError(f"Grad-CAM explains a CNN; this is a {self.family} model")
        x = self.prepare(gray)
        index = None if class_name is None else CLASSES.index(class_name)
        return gradcam(self.network, x, index)


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
