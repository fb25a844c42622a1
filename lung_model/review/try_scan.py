"""Try a scan: the champion's verdict and its explanation for one uploaded slice (Grad-CAM
for a CNN, `review.explain.explain_features` for a feature model), stored nowhere.

The upload is decoded by content (JPEG, PNG or DICOM, same refusals as scoring) and prepared
with the model's own preprocessing config (`LoadedModel.prepare`, the function training
used), so what is shown here is what batch scoring would have said.
See https://keras.io/examples/vision/grad_cam/
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lung_model.imaging.images import decode_bytes
from lung_model.review.explain import FeatureExplanation, explain_array, explain_features
from lung_model.scoring.predictor import slice_class
from lung_model.settings import CLASSES

if TYPE_CHECKING:
    from lung_model.scoring.inference import LoadedModel

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ScanVerdict:
    probabilities: dict[str, float]
    predicted_class: str
    model_input: np.ndarray  # what the model saw: (size, size) image, or feature vector
    gradcam: np.ndarray | None  # a CNN's: RGB uint8 overlay for the predicted class
    format: str
    width: int
    height: int
    features: FeatureExplanation | None = None  # a feature model's, of the malignant score


def try_scan(data: bytes, model: LoadedModel) -> ScanVerdict:
    """Predict one slice; raises `lung_model.imaging.images.UnreadableImage` with the reason."""
    from lung_model.imaging.errors import UnreadableImage

    if len(data) > MAX_UPLOAD_BYTES:
        raise UnreadableImage(f"file too large: {len(data)} bytes")
    decoded = decode_bytes(data, reduce_to=model.reduce_to)
    model_input = model.prepare(decoded.gray)
    probabilities = model.predict(model_input[None, ...])[0]
    predicted = slice_class(model, probabilities)
    cnn = model.family == "cnn"
    return ScanVerdict(
        probabilities={name: float(p) for name, p in zip(CLASSES, probabilities, strict=True)},
        predicted_class=predicted,
        model_input=np.squeeze(model_input),
        gradcam=explain_array(model, model_input, CLASSES.index(predicted)) if cnn else None,
        format=decoded.format,
        width=decoded.width,
        height=decoded.height,
        features=None if cnn else explain_features(model, decoded.gray, "malignant"),
    )
