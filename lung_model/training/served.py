"""The model as MLflow logs and serves it, for each family, with everything it needs.

The CNN is logged with the keras flavour (network ending in calibrated probabilities; its
preprocessing config, malignant threshold and study rule in the model's metadata). The
feature model is logged as a python-function model whose input is slice files' bytes
(JPEG, PNG or DICOM) and whose output is calibrated probabilities and the slice's class:
decoding, lung field, features, trees, temperature and thresholds all travel inside it.
Both carry a signature and an input example. `lung_model.scoring.inference` loads either.
See https://mlflow.org/docs/latest/ml/model/python_model/ and
https://mlflow.org/docs/latest/api_reference/python_api/mlflow.keras.html
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.pyfunc import PythonModel

from lung_model.platform.registry import MODEL_ARTIFACT
from lung_model.settings import CLASSES

if TYPE_CHECKING:
    from lung_model.training.feature_model import SliceFeatureModel


def _keras_flavor() -> Any:
    """`mlflow.keras` with the model folder created before the input example is written into
    it: MLflow's keras `save_model` writes the example first and fails on a fresh folder
    (https://github.com/mlflow/mlflow/issues/16183). `mlflow.keras.log_model` is exactly
    `Model.log(flavor=mlflow.keras, ...)`, so this logs the same keras-flavour model."""
    import mlflow.keras

    def save_model(path: str, **kwargs: Any) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)

    return SimpleNamespace(__name__=mlflow.keras.__name__, save_model=save_model)


def log_cnn(network: Any, example: np.ndarray, metadata: dict[str, Any]) -> str:
    """Log the calibrated keras network; return its model URI."""
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    signature = infer_signature(example, np.asarray(network.predict(example, verbose=0)))
    info = Model.log(
        artifact_path=None,
        name=MODEL_ARTIFACT,
        flavor=_keras_flavor(),
        model=network,
        signature=signature,
        input_example=example,
        metadata={"family": "cnn", "classes": list(CLASSES), **metadata},
        pip_requirements=[
            f"tensorflow-cpu=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )
    return str(info.model_uri)


class SliceFiles(PythonModel):
    """Column `image`: slice files' bytes -> p_normal, p_benign, p_malignant, class."""

    def __init__(self, model: SliceFeatureModel) -> None:
        self.model = model

    def predict(self, context, model_input, params=None):
        # no type hints: MLflow would read them as a schema (the signature is logged instead)
        import pandas as pd

        from lung_model.imaging.images import decode_bytes
        from lung_model.training.metrics import classify

        grays = [decode_bytes(bytes(b)).gray for b in model_input["image"]]
        features = np.stack([self.model.prepare(g) for g in grays])
        probabilities = self.model.predict(features)
        table = pd.DataFrame(probabilities, columns=[f"p_{c}" for c in CLASSES])
        decided = classify(probabilities, self.model.malignant_threshold)
        table["predicted_class"] = [CLASSES[i] for i in decided]
        return table


def log_feature_model(model: SliceFeatureModel, example: Path, metadata: dict[str, Any]) -> str:
    """Log the feature model as a python-function model over slice files; return its URI.
    `example` is one slice file (the input example and the signature come from it)."""
    from importlib.metadata import version

    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    wrapper = SliceFiles(model)
    frame = pd.DataFrame({"image": [example.read_bytes()]})
    signature = infer_signature(frame, wrapper.predict(None, frame))
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=wrapper,
        signature=signature,
        input_example=frame,
        metadata={"family": "features", "classes": list(CLASSES), **metadata},
        pip_requirements=[
            f"{package}=={version(package)}"
            for package in ("lightgbm", "scikit-image", "scikit-learn", "mlflow")
        ],
    )
    return str(info.model_uri)


def unwrap_feature_model(pyfunc_model: Any) -> SliceFeatureModel:
    """The `SliceFeatureModel` inside a loaded python-function model."""
    model: SliceFeatureModel = pyfunc_model.unwrap_python_model().model
    return model
