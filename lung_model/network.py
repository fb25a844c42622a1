"""The CNN, trained from scratch: conv-norm-ReLU blocks, global average pooling, logits.

About 300k parameters: a strided 5x5 stem, then four blocks of two 3x3 convolutions (16, 32,
64, 128 channels) with max pooling between them. Normalisation is batch norm by default
(fast on the CPU); `norm="group"` swaps in group norm, which computes the same thing at
training and inference. The training model outputs logits; `calibrated` wraps it into the
model that is logged and served: logits divided by the fitted temperature, then softmax, all
plain Keras layers, so the saved `.keras` file needs no custom code. The last convolution's
activation is named `last_conv` for Grad-CAM.
See https://keras.io/api/models/model/ and https://keras.io/api/layers/
"""

from __future__ import annotations

import keras
from keras import layers

from lung_model.settings import CLASSES

LAST_CONV = "last_conv"


def _norm(kind: str, width: int) -> layers.Layer:
    if kind == "group":
        return layers.GroupNormalization(groups=min(8, width))
    return layers.BatchNormalization(momentum=0.9)


def build_network(
    image_size: int,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    dropout: float = 0.3,
    norm: str = "batch",
) -> keras.Model:
    """Input (size, size, 1) in [0, 1] -> class logits."""
    inputs = keras.Input((image_size, image_size, 1), name="slice")
    x = layers.Conv2D(widths[0], 5, strides=2, padding="same", use_bias=False)(inputs)
    x = _norm(norm, widths[0])(x)
    x = layers.Activation("relu")(x)
    for index, width in enumerate(widths):
        last = index == len(widths) - 1
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = _norm(norm, width)(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = _norm(norm, width)(x)
        x = layers.Activation("relu", name=LAST_CONV if last else None)(x)
        if not last:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    logits = layers.Dense(len(CLASSES), name="logits")(x)
    return keras.Model(inputs, logits, name="lung_ct_cnn")


def calibrated(network: keras.Model, temperature: float) -> keras.Model:
    """The served model: softmax(logits / temperature), probabilities in CLASSES order."""
    scaled = layers.Rescaling(1.0 / temperature, name="temperature")(network.output)
    probabilities = layers.Activation("softmax", name="probabilities")(scaled)
    return keras.Model(network.input, probabilities, name="lung_ct_classifier")
