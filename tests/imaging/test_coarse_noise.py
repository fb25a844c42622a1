"""Noise one scale up (issue 19, docs/MODEL.md run 13): the harmonisation can bring the noise
of a crop's 2 x 2 block means to a common level too, where the fine noise alone left the
export's correlated noise; off by default, so every model logged before computes as it did."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lung_model.imaging.acquisition import (
    HarmoniseConfig,
    block_means,
    coarse_noise_to,
    noise_level,
    smoothed,
)
from lung_model.imaging.features import FeatureConfig, seen_crop

CROP = FeatureConfig(
    harmonise=HarmoniseConfig(blur=0.75, noise=0.008, levels_averaged=True), harmonise_at="crop"
)


def coarse(gray: np.ndarray) -> float:
    return noise_level(block_means(gray, 2))


def test_the_block_noise_is_brought_to_the_level(normal: np.ndarray) -> None:
    below = smoothed(normal)
    out = coarse_noise_to(below, 0.02, seed=7)
    assert coarse(below) < 0.01 and abs(coarse(out) - 0.02) < 0.002
    assert np.array_equal(out, coarse_noise_to(below, 0.02, seed=7))  # seeded
    assert np.array_equal(coarse_noise_to(out, 0.01, seed=7), out)  # already above: unchanged


def test_a_smooth_and_a_noisy_export_end_alike_one_scale_up(normal: np.ndarray) -> None:
    """A normal slice and the same slice smoothed as the malignant exports are: the fine
    noise alone leaves their crops apart one scale up; with `coarse_noise` they meet."""
    with_coarse = replace(CROP, harmonise=replace(CROP.harmonise, coarse_noise=0.02))
    apart = [coarse(seen_crop(g, CROP)) for g in (normal, smoothed(normal))]
    together = [coarse(seen_crop(g, with_coarse)) for g in (normal, smoothed(normal))]
    assert abs(apart[0] - apart[1]) > 2 * abs(together[0] - together[1])
    assert "coarse_noise" not in CROP.harmonise.to_dict()  # logged as before it existed
    assert HarmoniseConfig.from_dict(with_coarse.harmonise.to_dict()) == with_coarse.harmonise
