"""Grad-CAM: which regions of a slice pushed the model towards a class.

The GradientTape recipe of the keras.io example "Grad-CAM class activation visualization"
(https://keras.io/examples/vision/grad_cam/): gradients of the class score with respect to
the last convolution's feature maps, averaged per channel, weight those maps; ReLU, scaled
to [0, 1] and resized to the model input. The class score is taken before the softmax
(the model's `logits` layer) so saturated probabilities still give gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lung_model.training.network import LAST_CONV


def _score_layer(model: Any) -> Any:
    names = [layer.name for layer in model.layers]
    return model.get_layer("logits") if "logits" in names else model.layers[-1]


def gradcam(model: Any, x: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """(size, size, 1) prepared slice -> (size, size) float32 heatmap in [0, 1].

    `model` is a Keras model or a `lung_model.scoring.inference.LoadedModel`."""
    import keras
    import tensorflow as tf

    model = getattr(model, "keras_model", model)
    x = np.asarray(x, dtype=np.float32).reshape(x.shape[0], x.shape[1], 1)
    grad_model = keras.Model(
        model.inputs, [model.get_layer(LAST_CONV).output, _score_layer(model).output]
    )
    batch = tf.convert_to_tensor(x[None, ...], dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, scores = grad_model(batch, training=False)
        index = int(tf.argmax(scores[0])) if class_index is None else class_index
        score = scores[:, index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(0, 1, 2))
    cam = tf.nn.relu(tf.reduce_sum(features[0] * weights, axis=-1))
    peak = float(tf.reduce_max(cam))
    cam = cam / peak if peak > 0 else cam
    size = x.shape[:2]
    heatmap = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]
    return np.clip(heatmap.numpy(), 0.0, 1.0).astype(np.float32)


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the prepared slice in gray with the heatmap in 'jet' colours blended on top."""
    import matplotlib

    gray = np.squeeze(gray).astype(np.float32)
    if gray.shape != heatmap.shape:
        raise ValueError("overlay the heatmap on the prepared slice (same shape)")
    colours = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    blended = (1 - alpha) * np.clip(gray, 0, 1)[..., None] + alpha * colours
    return np.asarray(np.round(255 * blended), dtype=np.uint8)
