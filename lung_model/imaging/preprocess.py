"""Slice file to model input: the one preprocessing function of training and serving.

`prepare` turns a decoded gray slice (`lung_model.imaging.images.read_gray`) into a square
(size, size, 1) float32 array: aspect-preserving resize of the longer side, robust intensity
normalisation (percentiles to [0, 1]), then zero padding to a centred square, so the image's
shape cannot tell the class. With `harmonise` (v4) the full-resolution slice is first brought
to one common acquisition (`lung_model.imaging.acquisition`). Otherwise files are decoded for it at reduced scale (`load_file`, i.e.
`read_gray(path, reduce_to=config.reduce_to)`), in training and serving alike. The
`PreprocessConfig` is logged with every model (MLflow model metadata, see
https://mlflow.org/docs/latest/api_reference/python_api/mlflow.keras.html) and serving
reads it back from the model, so both sides always run the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lung_model.imaging.acquisition import HarmoniseConfig, harmonise, nested_dict
from lung_model.imaging.crop import crop
from lung_model.imaging.images import read_gray

# 2: JPEGs decoded at reduced DCT scale; 3: optional lung-field crop; 4: optional
# harmonisation to one common acquisition first (issue 19)
PREPROCESS_VERSION = 4
# a v2 config has no crop field (the same steps as crop "none"), v2 and v3 no harmonise (None)
READABLE_VERSIONS = (2, 3, 4)


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int = 160
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    crop: str = (
        "none"  # "lungs", "body" or "none": what `lung_model.imaging.crop` cuts the slice to
    )
    decode_size: int = 0  # a JPEG's longer side may be decoded down to this (0: image_size)
    # the common acquisition the full-resolution slice is brought to first
    # (`lung_model.imaging.acquisition.harmonise`); None: the slice as decoded
    harmonise: HarmoniseConfig | None = None
    version: int = PREPROCESS_VERSION

    @property
    def reduce_to(self) -> int | None:
        """What `lung_model.imaging.images.read_gray` may reduce a JPEG to: a crop needs more;
        None (full resolution) when the slice is harmonised: its noise is measured there."""
        if self.harmonise is not None:
            return None
        return self.decode_size or self.image_size

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "harmonise": nested_dict(self.harmonise)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessConfig:
        common = values.get("harmonise")
        config = cls(
            **{k: type(getattr(cls(), k))(v) for k, v in values.items() if k != "harmonise"},
            harmonise=None if common is None else HarmoniseConfig.from_dict(common),
        )
        if config.version not in READABLE_VERSIONS:
            raise ValueError(
                f"model needs preprocessing v{config.version}, this is v{PREPROCESS_VERSION}"
            )
        return config


def prepare(gray: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(H, W) gray in [0, 1] -> (size, size, 1) float32 model input."""
    if config.harmonise is not None:
        gray = harmonise(gray, config.harmonise)
    gray = crop(gray, config.crop)
    height, width = gray.shape
    size = config.image_size
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = Image.fromarray(gray.astype(np.float32), mode="F").resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(resized, dtype=np.float32)
    low, high = np.percentile(pixels, [config.low_percentile, config.high_percentile])
    pixels = np.clip((pixels - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    square = np.zeros((size, size), dtype=np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    square[top : top + new_h, left : left + new_w] = pixels
    return square[..., None]


def load_file(path: Path, config: PreprocessConfig) -> np.ndarray:
    """Read and prepare one slice file (raises `UnreadableImage` with the reason)."""
    return prepare(read_gray(path, reduce_to=config.reduce_to).gray, config)


def load_files(
    paths: Sequence[Path], config: PreprocessConfig, progress: bool = False
) -> np.ndarray:
    """(N, size, size, 1) float32 for readable files, in order."""
    from tqdm import tqdm

    size = config.image_size
    batch = np.zeros((len(paths), size, size, 1), dtype=np.float32)
    for i, path in enumerate(tqdm(paths, desc="load", unit="slice", disable=not progress)):
        batch[i] = load_file(path, config)
    return batch
