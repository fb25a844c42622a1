"""Training augmentation: same shape and range, reproducible, and batches cover every slice."""

from __future__ import annotations

import numpy as np

from lung_model.training.augment import AugmentedSlices, augment_slice
from lung_model.training.fit import class_weights


def square(size: int = 32) -> np.ndarray:
    image = np.zeros((size, size, 1), dtype=np.float32)
    image[8:24, 10:22] = 0.7  # a bright body on black
    return image


def test_augmented_slice_keeps_shape_range_and_black_background() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = augment_slice(square(), rng)
        assert out.shape == (32, 32, 1) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert out[0, 0, 0] == 0.0 and out[-1, -1, 0] == 0.0  # corners stay black
        assert 0.2 < out.mean() / square().mean() < 2.0  # the body is still there


def test_augmentation_is_reproducible_from_the_seed() -> None:
    a = augment_slice(square(), np.random.default_rng(7))
    b = augment_slice(square(), np.random.default_rng(7))
    c = augment_slice(square(), np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batches_cover_every_slice_once_per_epoch() -> None:
    x = np.arange(10, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 0, 0, 0, 0, 0, 1, 1, 2, 2]]
    labels = y.argmax(1)
    weights = np.array([class_weights(labels)[int(c)] for c in labels], dtype=np.float32)
    data = AugmentedSlices(x, y, weights, batch_size=4, seed=1, augment=False)
    assert len(data) == 3
    seen = np.concatenate([data[i][0][:, 0, 0, 0] for i in range(len(data))])
    assert sorted(seen.tolist()) == list(range(10))
    first_order = seen.copy()
    data.on_epoch_end()
    again = np.concatenate([data[i][0][:, 0, 0, 0] for i in range(len(data))])
    assert sorted(again.tolist()) == list(range(10)) and not np.array_equal(again, first_order)
    # balanced weights: each class carries the same total weight
    totals = [weights[labels == c].sum() for c in range(3)]
    np.testing.assert_allclose(totals, totals[0])


def test_mixup_blends_slices_labels_and_weights_alike() -> None:
    from lung_model.training.augment import mix

    x = np.stack([np.full((4, 4, 1), v, np.float32) for v in (0.0, 1.0)])
    y = np.eye(3, dtype=np.float32)[[0, 2]]
    weights = np.array([1.0, 3.0], np.float32)
    rng = np.random.default_rng(0)
    mixed_x, mixed_y, mixed_w = mix(x, y, weights, np.array([0.75, 0.75]), rng)
    np.testing.assert_allclose(mixed_y.sum(axis=1), 1.0)
    for i in range(2):  # each slice's pixel value and its malignant share move together
        np.testing.assert_allclose(mixed_x[i].mean(), mixed_y[i, 2], atol=1e-6)
        np.testing.assert_allclose(mixed_w[i], 1.0 + 2.0 * mixed_y[i, 2], atol=1e-6)
    labels = np.array([0, 2] * 4)
    data = AugmentedSlices(
        np.repeat(x, 4, axis=0), np.eye(3, dtype=np.float32)[labels], np.ones(8, np.float32),
        batch_size=8, seed=0, augment=False, mixup=0.4,
    )  # fmt: skip
    _, batch_y, _ = data[0]
    assert batch_y.shape == (8, 3) and not np.isin(batch_y, [0.0, 1.0]).all()


def test_each_epoch_draws_every_slice_or_its_reacquired_copy_reproducibly() -> None:
    x = np.arange(8, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
    copies = np.repeat(x + 100.0, 2, axis=0)  # two copies of slice i, both i + 100, slice-major
    copies[1::2] += 100.0  # the second copy of slice i: i + 200
    y = np.eye(3, dtype=np.float32)[np.arange(8) % 3]

    def epochs(seed: int) -> list[np.ndarray]:
        data = AugmentedSlices(x, y, np.ones(8, np.float32), 4, seed, False, copies=copies)
        drawn = []
        for _ in range(6):
            drawn.append(np.concatenate([data[i][0][:, 0, 0, 0] for i in range(len(data))]))
            data.on_epoch_end()
        return drawn

    drawn = epochs(3)
    for epoch in drawn:  # every slice once an epoch, as itself or as one of its own copies
        assert sorted(epoch.astype(int) % 100) == list(range(8))
    kinds = np.concatenate(drawn).astype(int) // 100
    assert set(kinds.tolist()) == {0, 1, 2}  # the slice itself and both copies are drawn
    for a, b in zip(drawn, epochs(3), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(drawn, epochs(4), strict=True))
