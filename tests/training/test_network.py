"""The CNN and the ensemble of several: one flat Keras model, the members' mean logits."""

from __future__ import annotations

import numpy as np

from lung_model.scoring.gradcam import gradcam
from lung_model.training.network import LAST_CONV, build_network, calibrated, ensemble


def test_ensemble_is_the_mean_of_its_members() -> None:
    members = [build_network(32, (4, 8), 0.3) for _ in range(3)]
    for seed, member in enumerate(members):  # three different networks
        rng = np.random.default_rng(seed)
        member.set_weights([w + rng.normal(0, 0.2, w.shape) for w in member.get_weights()])
    combined = ensemble(members, (4, 8), 0.3, "batch")
    x = np.random.default_rng(9).random((4, 32, 32, 1)).astype(np.float32)
    expected = np.mean([np.asarray(m(x, training=False)) for m in members], axis=0)
    np.testing.assert_allclose(np.asarray(combined(x, training=False)), expected, atol=1e-5)
    assert combined.get_layer(LAST_CONV) is not None and combined.get_layer("logits")
    assert ensemble(members[:1], (4, 8), 0.3, "batch") is members[0]


def test_gradcam_works_on_a_served_ensemble() -> None:
    members = [build_network(32, (4, 8), 0.3) for _ in range(2)]
    served = calibrated(ensemble(members, (4, 8), 0.3, "batch"), temperature=1.5)
    heatmap = gradcam(served, np.random.default_rng(0).random((32, 32, 1)), class_index=2)
    assert heatmap.shape == (32, 32) and 0.0 <= heatmap.min() <= heatmap.max() <= 1.0
