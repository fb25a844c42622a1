"""Preprocessing: square, padded, normalised, and shape-blind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lung_model.imaging.images import read_gray
from lung_model.imaging.preprocess import PreprocessConfig, load_file, prepare

FIXTURES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"
WIDE = FIXTURES / "Malignant cases" / "Malignant case (200).jpg"  # 801x512
SQUARE = FIXTURES / "Normal cases" / "Normal case (1).jpg"


def test_output_is_square_unit_range_float() -> None:
    config = PreprocessConfig(image_size=64)
    for path in (WIDE, SQUARE):
        x = load_file(path, config)
        assert x.shape == (64, 64, 1)
        assert x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x.max() == pytest.approx(1.0)


def test_wide_slice_keeps_its_aspect_with_black_bands() -> None:
    x = load_file(WIDE, PreprocessConfig(image_size=100))[..., 0]
    rows_with_content = np.flatnonzero(x.max(axis=1) > 0)
    # 801x512 scaled to 100 wide is 64 rows tall, centred: 18 black rows above and below
    assert rows_with_content.min() >= 17 and rows_with_content.max() <= 82
    assert x[:17].max() == 0 and x[83:].max() == 0


def test_size_cannot_betray_the_class() -> None:
    """The same picture at two sizes (a crop's aspect aside) gives nearly the same input."""
    rng = np.random.default_rng(0)
    gray = rng.random((512, 512)).astype(np.float32)
    big = np.kron(gray, np.ones((2, 2), dtype=np.float32))  # 1024x1024, same content
    config = PreprocessConfig(image_size=64)
    assert np.abs(prepare(gray, config) - prepare(big, config)).mean() < 0.02


def test_intensity_normalisation_removes_gain_and_offset() -> None:
    rng = np.random.default_rng(1)
    gray = rng.random((128, 96)).astype(np.float32) * 0.5
    config = PreprocessConfig(image_size=48)
    np.testing.assert_allclose(prepare(gray, config), prepare(gray * 1.6 + 0.1, config), atol=1e-4)


def test_config_round_trip_and_version_check() -> None:
    config = PreprocessConfig(image_size=96)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert PreprocessConfig.from_dict({"image_size": "96"}).image_size == 96
    older = PreprocessConfig.from_dict({"image_size": 96, "version": 2})  # before the crop
    assert older.crop == "none"
    with pytest.raises(ValueError, match="preprocessing v99"):
        PreprocessConfig.from_dict({**config.to_dict(), "version": 99})
    assert PreprocessConfig.from_dict({"image_size": 96, "version": 3}).harmonise is None


def test_a_harmonised_config_ships_its_acquisition_and_decodes_in_full() -> None:
    from lung_model.imaging.acquisition import HarmoniseConfig, smoothed

    config = PreprocessConfig(image_size=64, crop="lungs", harmonise=HarmoniseConfig())
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert config.reduce_to is None and PreprocessConfig(image_size=64).reduce_to == 64
    gray = read_gray(SQUARE).gray
    x = prepare(gray, config)
    assert x.shape == (64, 64, 1) and np.array_equal(x, prepare(gray, config))
    assert np.abs(prepare(smoothed(gray), config) - x).mean() < 0.05


def test_lung_crop_fills_the_square_with_chest() -> None:
    plain = load_file(SQUARE, PreprocessConfig(image_size=64))[..., 0]
    cropped = load_file(SQUARE, PreprocessConfig(image_size=64, crop="lungs"))[..., 0]
    assert cropped.shape == plain.shape
    # the uncropped slice has a wide dark border around the body; the crop has almost none
    assert (cropped[:, :4] < 0.05).mean() < (plain[:, :4] < 0.05).mean()


def test_a_crop_can_be_decoded_from_more_pixels_and_scoring_decodes_alike() -> None:
    from lung_model.scoring.decode import decode_file
    from lung_model.scoring.files import InputFile

    plain = PreprocessConfig(image_size=64, crop="lungs")
    detailed = PreprocessConfig(image_size=64, crop="lungs", decode_size=256)
    assert (plain.reduce_to, detailed.reduce_to) == (64, 256)
    v3 = PreprocessConfig.from_dict({"image_size": 64, "crop": "lungs", "version": 3})
    assert v3 == replace(plain, version=3) and v3.reduce_to == 64  # the same steps as before

    x = load_file(SQUARE, detailed)
    assert x.shape == (64, 64, 1) and not np.array_equal(x, load_file(SQUARE, plain))
    scored = decode_file(
        InputFile(SQUARE.name, SQUARE, SQUARE),
        lambda gray: prepare(gray, detailed),
        (64, 64, 1),
        None,
        detailed.reduce_to,
    )
    np.testing.assert_array_equal(scored.x, x)  # the scorer decodes as training did
