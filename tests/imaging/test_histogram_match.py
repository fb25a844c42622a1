"""Harmonisation by matching the body's gray values to one reference distribution
(`HarmoniseConfig.match`, issue 19, docs/MODEL.md run 12), on real slices of the release."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lung_model.imaging.acquisition import (
    MATCH_COMPARTMENTS_REFERENCE,
    MATCH_REFERENCE,
    HarmoniseConfig,
    body_quantiles,
    compartment_quantiles,
    harmonise,
    higher_level,
    match_reference,
    narrower_window,
    noise_level,
    wider_window,
)
from lung_model.imaging.features import FeatureConfig
from lung_model.imaging.lung_field import lung_masks
from lung_model.imaging.preprocess import PreprocessConfig

MATCHED = HarmoniseConfig(match=MATCH_REFERENCE)
BY_COMPARTMENT = HarmoniseConfig(match=MATCH_COMPARTMENTS_REFERENCE, match_compartments=True)


def test_a_slice_s_body_takes_the_reference_distribution(normal: np.ndarray) -> None:
    masks = lung_masks(normal)
    matched = match_reference(normal, MATCH_REFERENCE, masks)
    assert matched is not None
    quantiles = body_quantiles(matched, len(MATCH_REFERENCE), masks)
    assert np.abs(quantiles - np.array(MATCH_REFERENCE)).max() < 0.01
    assert matched.dtype == np.float32 and matched.shape == normal.shape


def test_the_lung_and_the_soft_tissue_each_take_their_reference(normal: np.ndarray) -> None:
    masks = lung_masks(normal)
    matched = match_reference(normal, MATCH_COMPARTMENTS_REFERENCE, masks, compartments=True)
    assert matched is not None
    quantiles = compartment_quantiles(matched, len(MATCH_COMPARTMENTS_REFERENCE) // 2, masks)
    assert quantiles is not None
    assert np.abs(quantiles - np.array(MATCH_COMPARTMENTS_REFERENCE)).max() < 0.01


def test_a_slice_without_lung_is_re_windowed_instead(normal: np.ndarray) -> None:
    body = np.full((256, 256), 0.2, np.float32)
    body[32:224, 32:224] = 0.8  # a body with no dark inside: no aerated lung
    masks = lung_masks(body)
    assert match_reference(body, MATCH_COMPARTMENTS_REFERENCE, masks, compartments=True) is None
    linear = HarmoniseConfig()
    assert np.array_equal(harmonise(body, BY_COMPARTMENT), harmonise(body, linear))


@pytest.mark.parametrize("perturb", [wider_window, narrower_window, higher_level])
def test_another_export_window_maps_to_nearly_the_same_slice(normal: np.ndarray, perturb) -> None:
    masks = lung_masks(normal)
    small = (slice(None, None, masks.step), slice(None, None, masks.step))
    matched = harmonise_intensity(normal)[small]
    other = harmonise_intensity(perturb(normal, 0))[small]
    before = np.abs(normal - perturb(normal, 0))[small][masks.filled].mean()
    after = np.abs(matched - other)[masks.filled].mean()
    assert after < 0.01 and after < before / 4, (before, after)


def harmonise_intensity(gray: np.ndarray) -> np.ndarray:
    matched = match_reference(gray, MATCH_REFERENCE)
    assert matched is not None
    return matched


def test_a_saturated_top_maps_to_one_level() -> None:
    gray = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (256, 1))
    gray[:, 200:] = 1.0  # a fifth of the slice saturated
    matched = harmonise_intensity(gray)
    assert np.ptp(matched[:, 200:]) == 0.0 and np.all(np.diff(matched[0]) >= 0)


def test_matched_harmonisation_is_deterministic_at_the_common_noise(normal: np.ndarray) -> None:
    once = harmonise(normal, MATCHED)
    assert np.array_equal(once, harmonise(normal.copy(), MATCHED))
    assert noise_level(once) == pytest.approx(MATCHED.noise, rel=0.1)
    assert not np.array_equal(once, harmonise(normal, HarmoniseConfig()))


def test_the_option_leaves_configs_logged_before_it_unchanged() -> None:
    for unset in ("match", "match_compartments"):  # as logged (and bench-cached) before
        assert unset not in HarmoniseConfig().to_dict()
    assert HarmoniseConfig.from_dict(BY_COMPARTMENT.to_dict()) == BY_COMPARTMENT
    assert HarmoniseConfig.from_dict(json.loads(json.dumps(MATCHED.to_dict()))) == MATCHED
    for logged in (
        FeatureConfig(harmonise=HarmoniseConfig()),
        PreprocessConfig(harmonise=HarmoniseConfig()),
    ):
        assert "match" not in logged.to_dict()["harmonise"]
        assert type(logged).from_dict(logged.to_dict()) == logged
    inside = FeatureConfig(harmonise=MATCHED).to_dict()["harmonise"]
    assert HarmoniseConfig.from_dict(json.loads(json.dumps(inside))) == MATCHED
    with pytest.raises(ValueError, match="harmonise_at"):
        FeatureConfig(harmonise=MATCHED, harmonise_at="crop")
