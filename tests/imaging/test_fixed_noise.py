"""One noise pattern for every slice (issue 19, docs/MODEL.md run 15): with the noise seeded by
each slice's content, any other export of a slice got a new pattern over its texture; with
`fixed_noise` two exports of one slice get the same. Off by default, so every model logged
before computes as it did."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lung_model.imaging.acquisition import (
    HarmoniseConfig,
    fixed_noise_field,
    noise_level,
    noise_to,
    wider_window,
)
from lung_model.imaging.features import FeatureConfig, seen_crop

CROP = FeatureConfig(
    harmonise=HarmoniseConfig(blur=0.75, noise=0.008, levels_averaged=True),
    harmonise_at="crop",
    mask_averaged=True,
)
FIXED = replace(CROP, harmonise=replace(CROP.harmonise, fixed_noise=True))


def test_the_fixed_pattern_is_shared_where_two_shapes_overlap() -> None:
    wide, tall = fixed_noise_field((120, 192)), fixed_noise_field((192, 150))
    assert np.array_equal(wide[:, :150], tall[:120])
    assert abs(float(wide.std()) - 1.0) < 0.02


def test_fixed_noise_reaches_the_level_whatever_the_seed() -> None:
    flat = np.full((192, 192), 0.5, np.float32)
    one, other = (noise_to(flat, 0.008, seed, present=0.0, fixed=True) for seed in (1, 2))
    assert np.array_equal(one, other)
    assert abs(noise_level(one) - 0.008) < 0.001
    seeded = noise_to(flat, 0.008, 1, present=0.0)
    assert not np.array_equal(seeded, noise_to(flat, 0.008, 2, present=0.0))


def test_two_exports_of_a_slice_differ_less_with_one_pattern(normal: np.ndarray) -> None:
    """The same slice exported with a wider window: harmonised, its two crops differ by the
    re-window's rounding and by the added noise; with one pattern, by the first alone."""

    def apart(config: FeatureConfig) -> float:
        one, other = seen_crop(normal, config), seen_crop(wider_window(normal), config)
        rows, cols = min(one.shape[0], other.shape[0]), min(one.shape[1], other.shape[1])
        return float(np.abs(one[:rows, :cols] - other[:rows, :cols]).mean())

    assert apart(FIXED) < 0.5 * apart(CROP)
    assert "fixed_noise" not in CROP.harmonise.to_dict()  # logged as before it existed
    assert HarmoniseConfig.from_dict(FIXED.harmonise.to_dict()) == FIXED.harmonise
