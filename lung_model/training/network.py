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


def _norm(kind: str, width: int, name: str) -> layers.Layer:
    if kind == "group":
        return layers.GroupNormalization(groups=min(8, width), name=name)
    return layers.BatchNormalization(momentum=0.9, name=name)


def _tower(
    inputs: keras.KerasTensor,
    widths: tuple[int, ...],
    dropout: float,
    norm: str,
    prefix: str = "",
) -> keras.KerasTensor:
    """The layers of one network on `inputs`, every layer named (`prefix` + a fixed name)."""
    count = iter(range(1000))

    def name(kind: str) -> str:
        return f"{prefix}{kind}_{next(count)}"

    x = layers.Conv2D(widths[0], 5, strides=2, padding="same", use_bias=False, name=name("conv"))(
        inputs
    )
    x = _norm(norm, widths[0], name("norm"))(x)
    x = layers.Activation("relu", name=name("relu"))(x)
    for index, width in enumerate(widths):
        last = index == len(widths) - 1
        for repeat in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=name("conv"))(x)
            x = _norm(norm, width, name("norm"))(x)
            final = last and repeat == 1
            last_name = LAST_CONV if prefix in ("", "m0_") else prefix + LAST_CONV
            x = layers.Activation("relu", name=last_name if final else name("relu"))(x)
        if not last:
            x = layers.MaxPooling2D(name=name("pool"))(x)
    x = layers.GlobalAveragePooling2D(name=name("gap"))(x)
    x = layers.Dropout(dropout, name=name("dropout"))(x)
    return layers.Dense(len(CLASSES), name=prefix + "logits")(x)


def build_network(
    image_size: int,
    widths: tuple[int, ...] = (16, 32, 64, 128),
    dropout: float = 0.3,
    norm: str = "batch",
) -> keras.Model:
    """Input (size, size, 1) in [0, 1] -> class logits."""
    inputs = keras.Input((image_size, image_size, 1), name="slice")
    return keras.Model(inputs, _tower(inputs, widths, dropout, norm), name="lung_ct_cnn")


def ensemble(
    networks: list[keras.Model], widths: tuple[int, ...], dropout: float, norm: str
) -> keras.Model:
    """One flat model whose logits are the mean of the trained `networks`' logits (their
    weights copied in; all plain Keras layers). The mean is named `logits` and member 0's
    last convolution `last_conv`, so Grad-CAM shows where the first member looked."""
    if len(networks) == 1:
        return networks[0]
    inputs = keras.Input(networks[0].input_shape[1:], name="slice")
    outputs = [_tower(inputs, widths, dropout, norm, f"m{i}_") for i in range(len(networks))]
    model = keras.Model(inputs, layers.Average(name="logits")(outputs), name="lung_ct_ensemble")
    for i, network in enumerate(networks):
        for layer in network.layers:
            if layer.weights:
                model.get_layer(f"m{i}_{layer.name}").set_weights(layer.get_weights())
    return model


def calibrated(network: keras.Model, temperature: float) -> keras.Model:
    """The served model: softmax(logits / temperature), probabilities in CLASSES order."""
    scaled = layers.Rescaling(1.0 / temperature, name="temperature")(network.output)
    probabilities = layers.Activation("softmax", name="probabilities")(scaled)
    return keras.Model(network.input, probabilities, name="lung_ct_classifier")
