"""The feature family measures each fitted slice's acquisition on the lung-field crop its
features were read from (`features_of`' `each_crop`), not on a second crop made for it: the
same measurements (as decoded, as seen, the seen crop's noise one scale up) in the same
order, and the same features, as measuring `seen_crop` beside `slice_features` gave."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lung_model.data.audit import inspect
from lung_model.data.split import make_split
from lung_model.imaging.acquisition import coarse_noise_level, measure
from lung_model.imaging.features import CROP_HARMONISE, seen_crop, slice_features
from lung_model.imaging.images import read_gray
from lung_model.settings import PROJECT_ROOT
from lung_model.training.families import Measured, load_feature_part
from lung_model.training.feature_model import FeatureModelConfig

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"
DEFAULT = FeatureModelConfig.tiny()
CROP = replace(
    DEFAULT, features=replace(DEFAULT.features, harmonise=CROP_HARMONISE, harmonise_at="crop")
)


@pytest.mark.parametrize("config", [DEFAULT, CROP], ids=["slice", "crop"])
def test_the_fitted_slices_are_measured_on_the_crop_their_features_read(
    config: FeatureModelConfig,
) -> None:
    split = make_split(inspect(FIXTURES))
    measured: list[Measured] = []
    part = load_feature_part(split, "train", FIXTURES, config, measured=measured)
    grays = [read_gray(FIXTURES / p).gray for p in split.paths("train")]
    crops = [seen_crop(g, config.features) for g in grays]
    assert measured == [
        (measure(g), measure(c), coarse_noise_level(c)) for g, c in zip(grays, crops, strict=True)
    ]
    assert measured[0][0] != measured[0][1]  # the crop, not the slice as decoded
    expected = np.stack([slice_features(g, config.features) for g in grays])
    assert part.x.tobytes() == expected.tobytes()
