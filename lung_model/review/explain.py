"""Grad-CAM overlays for the study view and "try a scan", computed on demand and cached.

The heatmap comes from `lung_model.gradcam.gradcam` on the slice exactly as the model saw it
(`lung_model.preprocess.prepare`); it is drawn over that same padded, resized image. Overlays
are cached as PNG under `LUNG_HOME/cache/gradcam/<model>/<version>/`, keyed by the slice's
sha256 and the class, so a study opened twice costs one Grad-CAM per slice.
See https://keras.io/examples/vision/grad_cam/
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from PIL import Image

from lung_model.settings import Settings

if TYPE_CHECKING:
    from lung_model.inference import LoadedModel


def overlay(model_input: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8: the gray model input with the heatmap (0..1) blended over it in 'jet'."""
    gray = np.squeeze(model_input).astype(np.float32)
    gray = (gray - gray.min()) / max(float(gray.max() - gray.min()), 1e-6)
    heat = np.asarray(
        Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(
            gray.shape[::-1], Image.Resampling.BILINEAR
        ),
        dtype=np.float32,
    )
    colored = colormaps["jet"](heat / 255.0)[..., :3]
    blended = (1 - alpha) * gray[..., None] + alpha * colored
    return (np.clip(blended, 0, 1) * 255).astype(np.uint8)


def prepare_for(model: LoadedModel, gray: np.ndarray) -> np.ndarray:
    """The slice as this model was trained to see it (its own preprocessing config)."""
    from lung_model.preprocess import PreprocessConfig, prepare

    config = getattr(model, "preprocess", None) or PreprocessConfig(image_size=model.image_size)
    return prepare(gray, config)


def explain_array(model: LoadedModel, model_input: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM overlay (RGB uint8) for one prepared slice and one class."""
    from lung_model.gradcam import gradcam

    return overlay(model_input, gradcam(model, model_input, class_index))


def cache_path(settings: Settings, model: LoadedModel, sha256: str, class_index: int) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    return (
        settings.home
        / "cache"
        / "gradcam"
        / name
        / str(model.version)
        / f"{sha256}-{class_index}.png"
    )


def explain_file(
    settings: Settings, model: LoadedModel, path: Path, sha256: str, class_index: int
) -> np.ndarray:
    """Grad-CAM overlay of a stored slice, from the cache when it was computed before."""
    cached = cache_path(settings, model, sha256, class_index)
    if cached.exists():
        return np.asarray(Image.open(cached).convert("RGB"))
    from lung_model.images import read_gray

    image = explain_array(model, prepare_for(model, read_gray(path).gray), class_index)
    cached.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    temporary = cached.with_suffix(".tmp")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(cached)
    return image
