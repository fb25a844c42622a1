"""Lung field: the filled mask holds both lungs and their masses, stays inside the body and
leaves the heart out; its box and crop sit on the full-resolution slice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import disk

from lung_model.imaging.crop import fill_holes, open_cross
from lung_model.imaging.images import read_gray
from lung_model.imaging.lung_field import (
    close_disk,
    crop_lung_field,
    dilate_disk,
    lung_masks,
    with_missing_lung,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"
SLICES = sorted(FIXTURES.glob("*/*.jpg"))


def chest(mass: bool = False, bridge: bool = False) -> np.ndarray:
    """512 px synthetic chest: bright body, two dark lungs, a bright heart between them;
    `mass`: a bright mass on the left lung's outer wall; `bridge`: lungs touching in front."""
    rows, cols = np.mgrid[0:512, 0:512]
    gray = np.full((512, 512), 0.05, dtype=np.float32)
    gray[((rows - 256) / 200) ** 2 + ((cols - 256) / 240) ** 2 < 1] = 0.8
    for centre in (150, 362):
        gray[((rows - 256) / 140) ** 2 + ((cols - centre) / 90) ** 2 < 1] = 0.15
    if bridge:
        gray[110:150, 150:362] = 0.15
    if mass:
        gray[(rows - 366) ** 2 + (cols - 150) ** 2 < 30**2] = 0.8  # on the back wall
    return gray


@pytest.mark.parametrize("path", SLICES, ids=lambda p: p.name)
def test_filled_mask_holds_the_lungs_inside_the_body(path: Path) -> None:
    gray = read_gray(path).gray
    masks = lung_masks(gray)
    small = gray[:: masks.step, :: masks.step]
    assert not (masks.filled & ~masks.body).any()
    assert not (masks.air & ~masks.filled).any()
    dark = ndimage.binary_opening(masks.body & (small <= masks.threshold))
    labels, _ = ndimage.label(dark)
    lungs = np.isin(labels, 1 + np.argsort(np.bincount(labels.ravel())[1:])[-2:])
    assert (masks.filled & lungs).sum() >= 0.95 * lungs.sum()
    assert 0.03 < masks.filled.sum() / masks.body.sum() < 0.7


@pytest.mark.parametrize("path", SLICES[::4], ids=lambda p: p.name)
def test_crop_is_the_field_box_at_full_resolution(path: Path) -> None:
    gray = read_gray(path).gray
    masks = lung_masks(gray)
    top, bottom, left, right = masks.box()
    assert 0 <= top < bottom <= gray.shape[0] and 0 <= left < right <= gray.shape[1]
    crop = crop_lung_field(gray, masks, 256)
    assert max(crop.gray.shape) == 256
    assert crop.filled.shape == crop.air.shape == crop.gray.shape
    assert crop.gray.dtype == np.float32 and crop.filled.dtype == bool


def test_closing_radius_keeps_a_juxta_pleural_mass_inside() -> None:
    assert lung_masks(chest(mass=True)).filled[366 // 4, 150 // 4]
    assert not lung_masks(chest(mass=True), close_radius=8).filled[366 // 4, 150 // 4]


def test_midline_cut_leaves_the_heart_out_when_the_lungs_touch() -> None:
    masks = lung_masks(chest(bridge=True))
    assert masks.filled[256 // 4, 140 // 4] and masks.filled[256 // 4, 372 // 4]  # both lungs
    assert not masks.filled[256 // 4, 256 // 4]  # the heart


def test_block_means_find_the_lungs_of_an_export_too_noisy_for_every_4th_pixel() -> None:
    noise = np.random.default_rng(0).normal(scale=0.25, size=(512, 512))
    gray = np.clip(chest() + noise, 0.0, 1.0).astype(np.float32)
    strided, averaged = lung_masks(gray), lung_masks(gray, averaged=True)
    assert not strided.air.any()  # the speckled body does not enclose the lungs
    lungs, heart = ((256 // 4, 150 // 4), (256 // 4, 362 // 4)), (256 // 4, 256 // 4)
    assert averaged.filled[lungs[0]] and averaged.filled[lungs[1]] and not averaged.filled[heart]
    clean = lung_masks(chest(), averaged=True)  # where striding finds them, so do the means
    assert (clean.filled == lung_masks(chest()).filled).mean() > 0.99


@pytest.mark.parametrize("path", SLICES[::6], ids=lambda p: p.name)
def test_distance_transform_closing_is_a_disk_closing(path: Path) -> None:
    masks = lung_masks(read_gray(path).gray)
    lungs = np.pad(masks.air, 11)
    expected = ndimage.binary_closing(lungs, structure=disk(10))
    assert np.array_equal(close_disk(lungs, 10), expected)


@pytest.mark.parametrize("radius", [10.0, 40 / 3, 40 / 6, 13.5, 5.0])
def test_disk_closing_keeps_the_pixels_of_two_distance_transforms(radius: float) -> None:
    rng = np.random.default_rng(round(radius * 10))
    pad = math.ceil(radius) + 1
    for _ in range(20):
        height, width = rng.integers(20, 90, 2)
        mask = np.zeros((height + 2 * pad, width + 2 * pad), bool)
        blobs = ndimage.gaussian_filter(rng.random((height, width)), rng.uniform(1, 4))
        mask[pad:-pad, pad:-pad] = blobs > rng.uniform(0.45, 0.6)
        mask[pad + height // 2, pad + width // 2] = True
        dilated = ndimage.distance_transform_edt(~mask) <= radius
        assert np.array_equal(dilate_disk(mask, radius), dilated)
        closed = ndimage.distance_transform_edt(dilated) > radius
        assert np.array_equal(close_disk(mask, radius), closed)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_open_cross_is_scipys_binary_opening(iterations: int) -> None:
    rng = np.random.default_rng(iterations)
    masks = [np.ones((5, 7), bool), np.zeros((4, 4), bool), np.ones((1, 9), bool)]
    for _ in range(60):
        noise = rng.random(tuple(rng.integers(1, 60, 2)))
        masks.append(ndimage.gaussian_filter(noise, rng.uniform(0, 2)) > rng.uniform(0.3, 0.7))
    for mask in masks:
        expected = ndimage.binary_opening(mask, iterations=iterations)
        assert np.array_equal(open_cross(mask, iterations), expected)


@pytest.mark.parametrize("seed", range(4))
def test_fill_holes_is_scipys_binary_fill_holes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((96, 128)), 2) > 0.5  # blobs, rings, holes
    masks = [noise, ~noise, np.zeros((5, 5), bool), np.ones((5, 5), bool)]
    masks += [lung_masks(read_gray(path).gray).air for path in SLICES[seed::8]]
    for mask in masks:
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_nothing_to_find_falls_back_to_the_whole_slice() -> None:
    masks = lung_masks(np.zeros((64, 80), np.float32))
    assert masks.filled.all() and masks.box() == (0, 64, 0, 80)


def test_masks_are_found_once_for_the_same_slice_and_arguments() -> None:
    """Scoring measures the acquisition on the masks the features found: the same array
    and arguments give the same (read-only) masks; another array, equal or not, or other
    arguments are looked at afresh."""
    gray = chest()
    found = lung_masks(gray, averaged=True)
    assert lung_masks(gray, averaged=True) is found
    assert not found.filled.flags.writeable and not found.air.flags.writeable
    with pytest.raises(ValueError):
        found.air[0, 0] = True
    again = lung_masks(gray.copy(), averaged=True)
    assert again is not found and np.array_equal(again.filled, found.filled)
    assert lung_masks(gray, averaged=False) is not again
    other = chest(mass=True)
    assert lung_masks(other, averaged=True).filled.sum() != found.filled.sum()


def test_a_lung_the_air_cannot_find_is_mirrored_from_the_other() -> None:
    """A consolidated lung is tissue, not air: only the other lung is found, and the crop
    would cut the diseased one off. Its mirror image about the body's midline brings it back."""
    gray = chest()
    rows, cols = np.mgrid[0:512, 0:512]
    gray[((rows - 256) / 140) ** 2 + ((cols - 150) / 90) ** 2 < 1] = 0.7  # the left lung
    masks = lung_masks(gray)
    consolidated, aerated, heart = (256 // 4, 150 // 4), (256 // 4, 362 // 4), (256 // 4, 256 // 4)
    assert masks.filled[aerated] and not masks.filled[consolidated]
    whole = with_missing_lung(masks)
    assert whole.filled[consolidated] and whole.filled[aerated] and not whole.filled[heart]
    assert np.array_equal(whole.air, masks.air)  # the air is what it was
    top, bottom, left, right = whole.box()
    assert left < 150 - 90 + 8 and right > 362 + 90 - 8


def test_two_lungs_found_are_left_as_they_are() -> None:
    masks = lung_masks(chest(bridge=True))
    assert with_missing_lung(masks) is masks


@pytest.mark.parametrize("case", [44, 45])
def test_the_lung_outside_a_thin_chest_wall_is_brought_back(case: int) -> None:
    """Malignant cases 44 and 45: the right lung's chest wall is too thin to close the body
    at the masks' scale, so only the left lung (the tumour's) was found."""
    path = FIXTURES / "Malignant cases" / f"Malignant case ({case}).jpg"
    masks = lung_masks(read_gray(path).gray, averaged=True)
    body = np.flatnonzero(masks.body.any(axis=0))
    middle = (body[0] + body[-1]) // 2
    assert np.flatnonzero(masks.filled.any(axis=0))[0] > middle
    whole = with_missing_lung(masks)
    assert np.flatnonzero(whole.filled.any(axis=0))[0] < middle - 20
