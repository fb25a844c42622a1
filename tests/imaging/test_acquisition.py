"""Acquisition measurements, the common acquisition and the perturbations (issue 19), on
real slices of the release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lung_model.imaging.acquisition import (
    MAD_TO_SIGMA,
    MEASUREMENTS,
    PERTURBATIONS,
    HarmoniseConfig,
    acquisition_range,
    harmonise,
    measure,
    noise_level,
    noise_to,
    noisier,
    quarter_dose,
    smaller_matrix,
    smoothed,
    tissue_levels,
    wider_window,
)
from lung_model.imaging.images import read_gray

SLICES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"


@pytest.fixture(scope="module")
def malignant() -> np.ndarray:
    return read_gray(SLICES / "Malignant cases" / "Malignant case (2).jpg").gray


def test_the_release_fingerprint_is_measured(normal: np.ndarray, malignant: np.ndarray) -> None:
    assert measure(malignant).noise < 0.5 * measure(normal).noise


def test_a_smoothed_slice_measures_lower_noise(normal: np.ndarray) -> None:
    before, after = measure(normal), measure(smoothed(normal))
    assert after.noise < 0.5 * before.noise
    assert after.noise == pytest.approx(0.0025, abs=0.0005)
    assert measure(noisier(smoothed(normal), seed=1)).noise == pytest.approx(0.007, abs=0.001)


def test_a_quarter_dose_doubles_a_normal_slice_s_noise(normal: np.ndarray) -> None:
    """`noisier` stops at the normal level, so a normal slice needs the quarter dose to be
    checked under more noise at all."""
    assert noise_level(noisier(normal, seed=1)) == pytest.approx(noise_level(normal), rel=0.05)
    assert noise_level(quarter_dose(normal, seed=1)) == pytest.approx(0.014, abs=0.0015)


def test_a_wider_window_measures_wider(normal: np.ndarray) -> None:
    assert measure(wider_window(normal)).window_width > 1.4 * measure(normal).window_width


def test_measurements_and_their_range(normal: np.ndarray, malignant: np.ndarray) -> None:
    small = measure(smaller_matrix(normal))
    assert (small.rows, small.cols) == (384, 384)
    values = measure(normal).as_dict()
    assert list(values) == list(MEASUREMENTS) and all(isinstance(v, float) for v in values.values())
    bounds = acquisition_range([measure(normal), measure(malignant), small])
    assert list(bounds) == list(MEASUREMENTS)
    assert bounds["rows"][0] < 400 and bounds["rows"][1] == pytest.approx(512, abs=2)
    assert all(low <= high for low, high in bounds.values())
    assert acquisition_range([]) == {}


def test_harmonise_brings_a_smoothed_and_a_noisy_copy_to_one_noise(normal: np.ndarray) -> None:
    config = HarmoniseConfig()
    smooth, noisy = harmonise(smoothed(normal), config), harmonise(noisier(normal, 3), config)
    assert noise_level(smooth) == pytest.approx(config.noise, rel=0.1)
    assert noise_level(noisy) == pytest.approx(config.noise, rel=0.1)
    wide = measure(harmonise(wider_window(normal), config))
    assert wide.window_width == pytest.approx(
        measure(harmonise(normal, config)).window_width, rel=0.1
    )
    assert harmonise(smaller_matrix(normal), config).shape == (512, 512)


def test_a_common_ceiling_gives_every_export_the_narrow_window_s_saturation(
    normal: np.ndarray,
) -> None:
    from lung_model.imaging.acquisition import narrower_window

    narrow = narrower_window(normal)
    assert (narrow >= 0.999).mean() > 3 * (normal >= 0.999).mean()  # it saturates tissue
    clipped = HarmoniseConfig(blur=2.0, ceiling=0.86)
    open_ = HarmoniseConfig(blur=2.0, ceiling=1.0)

    def apart(config: HarmoniseConfig) -> float:  # the bright end: what saturation changes
        bright = [np.percentile(harmonise(g, config), [90, 95, 99]) for g in (narrow, normal)]
        return float(np.abs(bright[0] - bright[1]).sum())

    assert apart(clipped) < 0.5 * apart(open_)


def test_harmonise_and_perturbations_are_deterministic(normal: np.ndarray) -> None:
    config = HarmoniseConfig()
    assert np.array_equal(harmonise(normal, config), harmonise(normal.copy(), config))
    for name, perturb in PERTURBATIONS.items():
        once, again = perturb(normal, 7), perturb(normal, 7)
        assert np.array_equal(once, again), name
        assert once.dtype == np.float32 and once.min() >= 0.0 and once.max() <= 1.0, name


def test_harmonise_config_round_trips() -> None:
    config = HarmoniseConfig(noise=0.02)
    assert HarmoniseConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        HarmoniseConfig.from_dict({"kernel": "soft"})


def test_a_square_common_matrix_leaves_no_columns_to_tell(normal: np.ndarray) -> None:
    wide = np.hstack([normal, normal[:, : normal.shape[1] // 2]])  # an odd, wider matrix
    square = HarmoniseConfig(square=True)
    assert harmonise(wide, square).shape == harmonise(normal, square).shape == (512, 512)
    assert harmonise(wide, HarmoniseConfig()).shape[1] > 512  # aspect kept by default
    assert "square" not in HarmoniseConfig().to_dict()  # logged as before it existed
    assert HarmoniseConfig.from_dict(square.to_dict()) == square


def test_noise_level_and_added_noise_are_scikit_images(
    normal: np.ndarray, malignant: np.ndarray
) -> None:
    from scipy.stats import norm
    from skimage.restoration import estimate_sigma
    from skimage.util import random_noise

    assert norm.ppf(0.75) == MAD_TO_SIGMA
    ramp = np.tile(np.linspace(0.0, 1.0, 97), (61, 1))  # odd sides, rounding-only details
    flat = np.zeros((40, 40), np.float32)
    flat[10:30, 10:30] = 0.5  # most diagonal details exactly zero (left out)
    grays = (normal, malignant, smoothed(malignant), ramp, ramp.astype(np.float32), flat)
    for gray in grays:
        assert noise_level(gray) == estimate_sigma(gray)
        present = noise_level(gray)
        for seed in (0, 12345):
            variance = 0.01**2 - present**2  # as noise_to draws it
            expected = random_noise(gray, mode="gaussian", var=variance, rng=seed, clip=True)
            added = noise_to(gray, 0.01, seed, present)
            assert np.array_equal(added, expected.astype(np.float32))


def test_levels_measured_after_the_blur_land_every_export_on_the_common_levels(
    normal: np.ndarray,
) -> None:
    from lung_model.imaging.acquisition import COMMON_AIR, tissue_levels

    def levels(config: HarmoniseConfig) -> np.ndarray:  # as the harmonised copies measure
        copies = (normal, smoothed(normal), noisier(normal, 3))
        return np.array([tissue_levels(harmonise(g, config)) for g in copies])

    before, after = levels(HarmoniseConfig()), levels(HarmoniseConfig(levels_after_blur=True))
    assert np.ptp(after, axis=0).max() < 0.5 * np.ptp(before, axis=0).max()
    assert np.abs(after[:, 0] - COMMON_AIR).max() < np.abs(before[:, 0] - COMMON_AIR).max()
    for unset in ("levels_after_blur", "levels_averaged"):  # logged as before
        assert unset not in HarmoniseConfig().to_dict()
    assert "levels_averaged" not in HarmoniseConfig(levels_after_blur=True).to_dict()
    blurred_first = HarmoniseConfig(levels_after_blur=True)
    assert HarmoniseConfig.from_dict(blurred_first.to_dict()) == blurred_first


def test_block_means_sit_on_the_masks_grid_and_lower_the_noise(normal: np.ndarray) -> None:
    from lung_model.imaging.acquisition import block_means

    odd = normal[:511, :509]
    means = block_means(odd, 4)
    assert means.shape == odd[::4, ::4].shape
    assert means[0, 0] == pytest.approx(float(odd[:4, :4].mean()), abs=1e-6)
    assert noise_level(means) < 0.5 * noise_level(odd[::4, ::4])


def test_averaged_levels_move_less_with_the_export(normal: np.ndarray) -> None:
    from lung_model.imaging.acquisition import tissue_levels
    from lung_model.imaging.lung_field import lung_masks

    def spread(averaged: bool) -> float:
        copies = (normal, smoothed(normal), noisier(normal, 3))
        levels = [tissue_levels(g, lung_masks(g), averaged=averaged) for g in copies]
        return float(np.ptp(np.array(levels), axis=0).max())

    assert spread(averaged=True) < spread(averaged=False)


def test_the_window_of_an_export_too_noisy_for_every_4th_pixel_is_the_lungs() -> None:
    """The tissues are found on block means: on a strided copy the noisy body no longer
    encloses the lungs and the air outside the body would stand in for the lung's."""
    rows, cols = np.mgrid[0:512, 0:512]
    chest = np.full((512, 512), 0.05, dtype=np.float32)
    chest[((rows - 256) / 200) ** 2 + ((cols - 256) / 240) ** 2 < 1] = 0.8
    for centre in (150, 362):
        chest[((rows - 256) / 140) ** 2 + ((cols - centre) / 90) ** 2 < 1] = 0.3
    noise = np.random.default_rng(0).normal(scale=0.25, size=chest.shape)
    noisy = np.clip(chest + noise, 0.0, 1.0).astype(np.float32)
    clean, measured = measure(chest), measure(noisy)
    assert measured.window_width == pytest.approx(clean.window_width, rel=0.1)
    assert measured.window_level == pytest.approx(clean.window_level, abs=0.03)
    strided_air, _ = tissue_levels(noisy)  # the copy `measure` read before run 14
    assert strided_air < 0.2  # the air outside the body
