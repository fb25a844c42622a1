"""The randomised acquisition augmentation both model families share: seeded by the slice
and the copy's number, so the same slice always gets the same copies, in any order."""

from __future__ import annotations

import numpy as np

from lung_model.imaging.acquisition import noise_level
from lung_model.training.reacquire import reacquired, reacquired_inputs


def slice_(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = np.full((96, 96), 0.2, np.float32)
    gray[20:76, 15:80] = 0.8  # a body
    gray[30:60, 25:45] = 0.3  # and a lung
    return np.clip(gray + rng.normal(0, 0.005, gray.shape), 0, 1).astype(np.float32)


def test_copies_are_reproducible_slice_major_and_other_acquisitions() -> None:
    a, b = slice_(1), slice_(2)
    both = reacquired_inputs([a, b], 2, lambda g: g[:8, :8], (8, 8))
    alone = [reacquired_inputs([g], 2, lambda g: g[:8, :8], (8, 8)) for g in (a, b)]
    np.testing.assert_array_equal(both, np.concatenate(alone))
    np.testing.assert_array_equal(both[1], reacquired(a, 1)[:8, :8])
    first, second = reacquired(a, 0), reacquired(a, 1)
    assert not np.array_equal(first, second)  # two copies, two acquisitions
    noises = {round(noise_level(g), 4) for g in (a, first, second)}
    assert len(noises) == 3  # each copy has a noise level of its own
    assert reacquired_inputs([], 2, lambda g: g, (8, 8)).shape == (0, 8, 8)


def test_the_cnn_training_copies_are_its_inputs_of_the_reacquired_full_resolution_slices() -> None:
    from dataclasses import replace
    from pathlib import Path

    from lung_model.imaging.images import read_gray
    from lung_model.imaging.preprocess import prepare
    from lung_model.training.fit import TrainConfig, reacquired_copies

    data = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"
    paths = sorted(str(p.relative_to(data)) for p in data.glob("*/*.jpg"))[:3]
    config = replace(TrainConfig.tiny(), harmonise=True, acquisition_copies=2)
    copies = reacquired_copies(paths, data, config)

    assert copies is not None and copies.shape == (6, 32, 32, 1)
    second = reacquired(read_gray(data / paths[1]).gray, 1)
    np.testing.assert_array_equal(copies[3], prepare(second, config.preprocess()))
    assert not np.array_equal(copies[2], copies[3])
    np.testing.assert_array_equal(copies, reacquired_copies(paths, data, config))
    assert reacquired_copies(paths, data, TrainConfig.tiny()) is None  # models logged before


def test_the_copies_noise_is_drawn_from_the_range_given() -> None:
    """`noise`: the range the copies' noise level is drawn from (the default `NOISE_RANGE`
    draws what the copies always had)."""
    from lung_model.imaging.acquisition import NOISE_RANGE

    gray = slice_(3)
    np.testing.assert_array_equal(reacquired(gray, 0), reacquired(gray, 0, noise=NOISE_RANGE))
    smooth = [noise_level(reacquired(gray, k, noise=(0.0015, 0.003))) for k in range(6)]
    wide = [noise_level(reacquired(gray, k, noise=(0.009, 0.012))) for k in range(6)]
    # later steps (a smaller matrix, JPEG) may smooth a copy further, so compare on average
    assert np.mean(smooth) < 0.5 * np.mean(wide)
