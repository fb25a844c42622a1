"""Training-time augmentation in numpy: flips, small rotations, zooms and shifts, gamma, mixup,
and other acquisitions: each epoch draws every training slice or one of its re-acquired
copies (`lung_model.training.reacquire`), with equal chances.

Applied to training batches only, outside the model, so the served network never contains
an augmentation layer. Geometry uses scipy.ndimage.affine_transform
(https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.affine_transform.html)
about the image centre with black fill, like the padding; gamma keeps black black, so no
augmentation invents a cue that real slices lack. Batches come from a keras PyDataset
(https://keras.io/api/utils/python_utils/#pydataset-class), reshuffled every epoch.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from scipy.ndimage import affine_transform

MAX_DEGREES = 8.0
ZOOM = (0.9, 1.1)
MAX_SHIFT = 0.06  # of the side
GAMMA = (0.8, 1.25)


def augment_slice(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 1) in [0, 1] -> a randomly flipped, rotated, zoomed, shifted, gamma'd copy."""
    gray = image[..., 0]
    if rng.random() < 0.5:
        gray = gray[:, ::-1]
    size = gray.shape[0]
    angle = np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES))
    zoom = rng.uniform(*ZOOM)
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    matrix = np.array([[cos, -sin], [sin, cos]])
    centre = np.array([size / 2 - 0.5, size / 2 - 0.5])
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size
    offset = centre - matrix @ (centre + shift)
    moved = affine_transform(gray, matrix, offset=offset, order=1, mode="constant", cval=0.0)
    moved = np.clip(moved, 0.0, 1.0) ** rng.uniform(*GAMMA)
    return moved[..., None].astype(np.float32)


def mix(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, share: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixup (Zhang et al., ICLR 2018): each slice blended with a random other one of the
    batch, labels and weights in the same proportion (`share` of the slice itself)."""
    other = rng.permutation(len(x))
    blend = share.astype(np.float32)
    x = blend[:, None, None, None] * x + (1 - blend[:, None, None, None]) * x[other]
    y = blend[:, None] * y + (1 - blend[:, None]) * y[other]
    return x, y, blend * weights + (1 - blend) * weights[other]


class AugmentedSlices(keras.utils.PyDataset):
    """Shuffled, augmented (x, one-hot y, sample weight) batches of the training slices."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        weights: np.ndarray,
        batch_size: int,
        seed: int,
        augment: bool = True,
        mixup: float = 0.0,
        copies: np.ndarray | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.x, self.y, self.weights = x, y, weights
        # (N * k, ...) re-acquired copies, slice-major; None or empty: the slices only
        self.copies = copies if copies is not None and len(copies) else None
        self.batch_size, self.augment, self.mixup = batch_size, augment, mixup
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pick = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.x[pick]
        if self.copies is not None:
            x = self._reacquired(pick, x, self.copies)
        if self.augment:
            x = np.stack([augment_slice(image, self.rng) for image in x])
        y, weights = self.y[pick], self.weights[pick]
        if self.mixup > 0:
            return mix(x, y, weights, self.rng.beta(self.mixup, self.mixup, len(x)), self.rng)
        return x, y, weights

    def _reacquired(self, pick: np.ndarray, x: np.ndarray, copies: np.ndarray) -> np.ndarray:
        """Each picked slice (0) or one of its k copies (1..k), drawn with equal chances."""
        k = len(copies) // len(self.x)
        which = self.rng.integers(0, k + 1, len(pick))
        copied = copies[pick * k + np.maximum(which - 1, 0)]
        return np.where((which > 0).reshape(-1, *([1] * (x.ndim - 1))), copied, x)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
