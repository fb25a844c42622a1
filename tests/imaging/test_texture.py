"""The texture statistics' own arithmetic gives scikit-image's numbers exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from lung_model.imaging.texture import GLCM_ANGLES, GLCM_PROPERTIES, glcm_properties, lbp_codes


def textures(seed: int) -> list[np.ndarray]:
    """Noise, smooth blobs, a flat patch, a ramp and a two-level image (many ties)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((57, 83))
    return [
        noise,
        ndimage.gaussian_filter(noise, 2),
        np.full((20, 30), 0.4),
        np.tile(np.linspace(0, 1, 41), (33, 1)),
        (noise > 0.5) * 0.7,
    ]


@pytest.mark.parametrize("seed", range(3))
def test_glcm_properties_are_graycoprops(seed: int) -> None:
    for gray in textures(seed):
        levels = np.minimum((gray * 32).astype(np.intp), 31).astype(np.uint8)
        for normed in (True, False):
            counts = graycomatrix(levels, (1, 3, 6), GLCM_ANGLES, 32, True, normed)
            ours = glcm_properties(counts)
            for name in GLCM_PROPERTIES:
                assert np.array_equal(ours[name], graycoprops(counts, name))


@pytest.mark.parametrize("seed", range(3))
def test_lbp_codes_are_local_binary_pattern(seed: int) -> None:
    for gray in textures(seed):
        u8 = (gray * 255).astype(np.uint8)
        assert np.array_equal(lbp_codes(u8), local_binary_pattern(u8, 8, 1))
