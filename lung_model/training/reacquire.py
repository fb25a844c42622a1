"""Randomised acquisition augmentation, shared by both model families (issue 19): each
training slice re-acquired at random (`lung_model.imaging.acquisition.random_acquisition`:
another noise level, window, matrix, JPEG export), seeded by the slice's pixels and the
copy's number, so one slice always gives the same copies, whichever process or order
computes them (training stays deterministic).

The feature family's trees learn from the copies beside the slices; the CNN draws, every
epoch, each training slice or one of its copies (`lung_model.training.augment`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from lung_model.imaging.acquisition import (
    CONTRAST_RANGE,
    NOISE_RANGE,
    content_seed,
    random_acquisition,
)


def reacquired(
    gray: np.ndarray,
    copy: int,
    contrast: tuple[float, float] = CONTRAST_RANGE,
    noise: tuple[float, float] = NOISE_RANGE,
) -> np.ndarray:
    """Copy number `copy` of the (H, W) gray slice under a random other acquisition
    (`contrast`, `noise`: the ranges of its contrast factor and noise level)."""
    return random_acquisition(gray, content_seed(gray) + copy, contrast, noise)


def reacquired_inputs(
    grays: Iterable[np.ndarray],
    copies: int,
    prepare: Callable[[np.ndarray], np.ndarray],
    shape: tuple[int, ...],
    contrast: tuple[float, float] = CONTRAST_RANGE,
    noise: tuple[float, float] = NOISE_RANGE,
) -> np.ndarray:
    """(N * copies, *shape) float32: the model inputs (`prepare`) of each decoded slice's
    `copies` re-acquired copies, slice-major (slice i's copies at i * copies ...)."""
    rows = [prepare(reacquired(g, k, contrast, noise)) for g in grays for k in range(copies)]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, *shape), np.float32)
