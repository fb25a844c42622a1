"""Stand-in models for the scoring tests: the engine takes any `Predictor`.

`ToyPredictor` is plain numpy (fast to import in subprocesses): deterministic
probabilities from each slice's pixels. `KerasPredictor` wraps a real Keras model.
Both can SIGKILL their own process on the n-th predict call, mid-batch.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from lung_model.imaging.preprocess import PreprocessConfig


@dataclass
class ToyPredictor:
    version: str
    name: str = "toy-classifier"
    data_version: str = "toy-data.dir"
    image_size: int = 32
    kill_on_call: int = 0  # SIGKILL this process on that predict call (1-based); 0: never
    delay: float = 0.0  # seconds per predict call, to interleave concurrent scorers
    malignant_threshold: float | None = None  # the decision rule fitted with a real model
    calls: int = field(default=0, init=False)

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.image_size)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.kill_on_call:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(self.delay)
        flat = batch.reshape(len(batch), -1)
        logits = np.stack([flat.mean(1) * 4, flat.std(1) * 8, flat[:, ::7].mean(1) * 6], axis=1)
        exp = np.exp(logits - logits.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)


@dataclass
class KerasPredictor:
    keras_model: object
    version: str
    name: str = "tiny-keras"
    data_version: str = "toy-data.dir"
    image_size: int = 32

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig(image_size=self.image_size)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.keras_model(batch, training=False))  # type: ignore[operator]


def tiny_keras_model(image_size: int = 32) -> object:
    """A real, untrained Keras classifier: conv, pooling, softmax over three classes."""
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


@dataclass
class ProcessPrepare:
    """The toy's preparation as a picklable function for the scorer's worker processes;
    SIGKILLs the worker on its n-th call (counted per worker; 0: never)."""

    image_size: int = 32
    kill_on_call: int = 0
    calls: int = 0

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        from lung_model.imaging.preprocess import prepare

        self.calls += 1
        if self.calls == self.kill_on_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return prepare(gray, PreprocessConfig(image_size=self.image_size))


@dataclass
class ProcessToyPredictor(ToyPredictor):
    """A `ToyPredictor` that prepares slices in worker processes, like the feature model."""

    process_prepare: ProcessPrepare = field(default_factory=ProcessPrepare)
