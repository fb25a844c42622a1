"""The feature values every supported config computes, pinned bit for bit: a faster way to
compute them (issue 19's scoring cost) must not move one. tests/fixtures/lung_features_pinned.npz
holds `slice_features` at c5be36c of the fixture's 18 slices and an odd-sized cut of one
(rows and columns off the masks' step), for the crop harmonisation with averaged levels (that
commit's default), the unharmonised config, the whole-slice harmonisation with and without
`levels_after_blur`, the crop harmonisation with subsampled levels and, from run 14, the default's
masks found on block means. A change meant to move
values rewrites it: `.venv/bin/python tests/imaging/test_feature_values.py` (and says so)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lung_model.imaging.acquisition import HarmoniseConfig, block_means
from lung_model.imaging.features import CROP_HARMONISE, FeatureConfig, slice_features
from lung_model.imaging.images import read_gray

FIXTURES = Path(__file__).parents[1] / "fixtures"
PINNED = np.load(FIXTURES / "lung_features_pinned.npz")
ODD_CUT = "[1:, 3:]"
CONFIGS = {  # the configs pinned (the first: the default at c5be36c; the last: from run 14)
    "crop_levels_averaged": FeatureConfig(
        harmonise=HarmoniseConfig(blur=0.75, noise=0.008, levels_averaged=True), harmonise_at="crop"
    ),
    "unharmonised": FeatureConfig(),
    "whole_slice": FeatureConfig(harmonise=HarmoniseConfig()),
    "whole_slice_levels_after_blur": FeatureConfig(
        harmonise=HarmoniseConfig(levels_after_blur=True)
    ),
    "crop": FeatureConfig(harmonise=CROP_HARMONISE, harmonise_at="crop"),
    "crop_masks_averaged": FeatureConfig(
        harmonise=HarmoniseConfig(blur=0.75, noise=0.008, levels_averaged=True),
        harmonise_at="crop",
        mask_averaged=True,
    ),
}


def _gray(path: str) -> np.ndarray:
    gray = read_gray(FIXTURES / "iq-othnccd" / path.removesuffix(ODD_CUT)).gray
    return gray[1:, 3:] if path.endswith(ODD_CUT) else gray


@pytest.fixture(scope="module")
def grays() -> list[np.ndarray]:
    return [_gray(str(path)) for path in PINNED["paths"]]


@pytest.mark.parametrize("index", range(len(PINNED["names"])), ids=PINNED["names"].tolist())
def test_every_config_computes_the_pinned_values(grays: list[np.ndarray], index: int) -> None:
    config = FeatureConfig.from_dict(json.loads(str(PINNED["configs"][index])))
    values = np.stack([slice_features(gray, config) for gray in grays])
    assert values.tobytes() == PINNED["values"][index].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_block_means_are_numpys_mean_of_each_block(dtype: type) -> None:
    rng = np.random.default_rng(0)
    for step in range(1, 10):
        for shape in [(8 * step, 6 * step), (37, 53), (step, 1), (1, 3 * step), (2 * step, step)]:
            gray = (rng.random(shape) * 255).astype(dtype)
            gray = gray if shape[0] % 2 else np.asfortranarray(gray)[::-1]  # any memory order
            rows, cols = -(-shape[0] // step) * step, -(-shape[1] // step) * step
            padded = np.pad(gray, ((0, rows - shape[0]), (0, cols - shape[1])), mode="edge")
            expected = padded.reshape(rows // step, step, cols // step, step).mean(axis=(1, 3))
            means = block_means(gray, step)
            assert means.dtype == expected.dtype
            assert means.tobytes() == expected.tobytes(), (step, shape)


def _pin() -> None:
    """Rewrite the fixture with this code's values of CONFIGS."""
    paths = sorted(str(p.relative_to(FIXTURES / "iq-othnccd")) for p in FIXTURES.glob("*/*/*.jpg"))
    paths.append(paths[0] + ODD_CUT)
    grays = [_gray(path) for path in paths]
    values = np.stack([np.stack([slice_features(g, c) for g in grays]) for c in CONFIGS.values()])
    np.savez_compressed(
        FIXTURES / "lung_features_pinned.npz",
        paths=np.array(paths),
        configs=np.array([json.dumps(c.to_dict()) for c in CONFIGS.values()]),
        names=np.array(list(CONFIGS)),
        values=values,
    )


if __name__ == "__main__":
    _pin()
