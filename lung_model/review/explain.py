"""Grad-CAM overlays for the study view and "try a scan", computed on demand and cached.

The heatmap comes from `lung_model.scoring.gradcam.gradcam` on the slice exactly as the model saw it
(the model's own preprocessing, `LoadedModel.prepare`) and is drawn over that same padded,
resized image. Overlays are cached as PNG under `LUNG_HOME/cache/gradcam/<model>/<version>/`,
keyed by the slice's sha256 and the class, so a slice explained twice costs one Grad-CAM.
See https://keras.io/examples/vision/grad_cam/
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lung_model.settings import Settings

if TYPE_CHECKING:
    from lung_model.scoring.inference import LoadedModel


def explain_array(model: LoadedModel, model_input: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM overlay (RGB uint8, model input size) for one prepared slice and one class."""
    from lung_model.scoring.gradcam import gradcam, overlay

    heatmap = gradcam(model, model_input, class_index)
    return np.asarray(overlay(np.squeeze(model_input), heatmap), dtype=np.uint8)


def cache_path(settings: Settings, model: LoadedModel, sha256: str, class_index: int) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    folder = settings.home / "cache" / "gradcam" / name / str(model.version)
    return folder / f"{sha256}-{class_index}.png"


def explain_file(
    settings: Settings, model: LoadedModel, path: Path, sha256: str, class_index: int
) -> np.ndarray:
    """Grad-CAM overlay of a stored slice, from the cache when it was computed before."""
    cached = cache_path(settings, model, sha256, class_index)
    if cached.exists():
        return np.asarray(Image.open(cached).convert("RGB"))
    image = explain_array(model, model.prepare_file(path), class_index)
    cached.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    temporary = cached.with_suffix(f".{id(buffer)}.tmp")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(cached)
    return image
