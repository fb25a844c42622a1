"""Lung-field crop: the box sits on the chest, not on the table or the padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lung_model.imaging.crop import crop, lung_box, otsu_threshold
from lung_model.imaging.images import read_gray

FIXTURES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"
SQUARE = FIXTURES / "Normal cases" / "Normal case (1).jpg"  # 512x512
WIDE = FIXTURES / "Malignant cases" / "Malignant case (200).jpg"  # 801x512


def synthetic_chest() -> np.ndarray:
    """Dark background, a bright elliptic body with two dark lungs, a table line below."""
    rows, cols = np.mgrid[0:256, 0:256]
    gray = np.full((256, 256), 0.1, dtype=np.float32)
    gray[((rows - 120) / 70) ** 2 + ((cols - 128) / 100) ** 2 < 1] = 0.8
    for centre in (88, 168):
        gray[((rows - 115) / 45) ** 2 + ((cols - centre) / 30) ** 2 < 1] = 0.2
    gray[225:228, 20:236] = 0.9  # the table: thin, separate from the body
    return gray


def test_otsu_splits_two_levels() -> None:
    rng = np.random.default_rng(0)
    values = np.clip(np.r_[rng.normal(0.2, 0.05, 500), rng.normal(0.8, 0.05, 300)], 0, 1)
    assert 0.35 < otsu_threshold(values) < 0.65


def test_box_holds_both_lungs_and_leaves_out_the_table() -> None:
    top, bottom, left, right = lung_box(synthetic_chest())
    assert top <= 70 and bottom >= 160  # the lungs span rows 70..160
    assert left <= 58 and right >= 198  # and columns 58..198
    assert bottom < 225  # the table is cut off
    body = lung_box(synthetic_chest(), "body")
    assert body[0] <= 50 and body[1] >= 190 and body[1] < 225


def test_one_lung_of_air_still_gives_a_symmetric_box() -> None:
    gray = synthetic_chest()
    rows, cols = np.mgrid[0:256, 0:256]
    gray[((rows - 115) / 45) ** 2 + ((cols - 168) / 30) ** 2 < 1] = 0.8  # a lung full of tumour
    top, bottom, left, right = lung_box(gray)
    assert left <= 58 and right >= 198


def test_real_slices_are_cut_to_the_chest() -> None:
    for path in (SQUARE, WIDE):
        gray = read_gray(path).gray
        cut = crop(gray, "lungs")
        assert 0.1 * gray.size < cut.size < 0.8 * gray.size
    assert crop(read_gray(SQUARE).gray, "none").shape == (512, 512)


def test_nothing_to_find_keeps_the_whole_slice() -> None:
    assert lung_box(np.zeros((64, 80), np.float32)) == (0, 64, 0, 80)
