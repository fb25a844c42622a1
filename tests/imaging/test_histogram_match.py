"""Harmonisation by matching the body's gray values to one reference distribution
(`HarmoniseConfig.match`, issue 19, docs/MODEL.md run 12), on real slices of the release."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lung_model.imaging.acquisition import (
    MATCH_REFERENCE,
    HarmoniseConfig,
    body_quantiles,
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


def test_a_slice_s_body_takes_the_reference_distribution(normal: np.ndarray) -> None:
    masks = lung_masks(normal)
    matched = match_reference(normal, MATCH_REFERENCE, masks)
    quantiles = body_quantiles(matched, len(MATCH_REFERENCE), masks)
    assert np.abs(quantiles - np.array(MATCH_REFERENCE)).max() < 0.01
    assert matched.dtype == np.float32 and matched.shape == normal.shape


@pytest.mark.parametrize("perturb", [wider_window, narrower_window, higher_level])
def test_another_export_window_maps_to_nearly_the_same_slice(normal: np.ndarray, perturb) -> None:
    masks = lung_masks(normal)
    small = (slice(None, None, masks.step), slice(None, None, masks.step))
    matched = match_reference(normal, MATCH_REFERENCE)[small]
    other = match_reference(perturb(normal, 0), MATCH_REFERENCE)[small]
    before = np.abs(normal - perturb(normal, 0))[small][masks.filled].mean()
    after = np.abs(matched - other)[masks.filled].mean()
    assert after < 0.01 and after < before / 4, (before, after)


def test_a_saturated_top_maps_to_one_level() -> None:
    gray = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (256, 1))
    gray[:, 200:] = 1.0  # a fifth of the slice saturated
    matched = match_reference(gray, MATCH_REFERENCE)
    assert np.ptp(matched[:, 200:]) == 0.0 and np.all(np.diff(matched[0]) >= 0)


def test_matched_harmonisation_is_deterministic_at_the_common_noise(normal: np.ndarray) -> None:
    once = harmonise(normal, MATCHED)
    assert np.array_equal(once, harmonise(normal.copy(), MATCHED))
    assert noise_level(once) == pytest.approx(MATCHED.noise, rel=0.1)
    assert not np.array_equal(once, harmonise(normal, HarmoniseConfig()))


def test_the_option_leaves_configs_logged_before_it_unchanged() -> None:
    assert "match" not in HarmoniseConfig().to_dict()  # as logged (and bench-cached) before
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
