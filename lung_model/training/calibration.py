"""Temperature scaling and expected calibration error.

One scalar T divides the logits before the softmax; it is fitted on the validation split by
minimising the negative log-likelihood (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017), with scipy.optimize.minimize_scalar
(https://docs.scipy.org/doc/scipy/reference/generated/scipy.optimize.minimize_scalar.html).
T leaves the predicted class unchanged; it only makes the probabilities honest.
"""

from __future__ import annotations

import numpy as np


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    from scipy.special import log_softmax

    log_p = log_softmax(logits / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    from scipy.special import softmax

    return softmax(logits / temperature, axis=1)


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (top-label)."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / count
        accuracy = np.bincount(which, correct, minlength=bins) / count
    return mean_conf, accuracy, count


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> float:
    """Top-label ECE: the count-weighted gap between confidence and accuracy per bin."""
    mean_conf, accuracy, count = reliability_bins(probabilities, labels, bins)
    used = count > 0
    return float(np.sum(count[used] * np.abs(mean_conf[used] - accuracy[used])) / count.sum())


def fit_malignant_threshold(
    probabilities: np.ndarray, labels: np.ndarray, target_recall: float, malignant: int
) -> float:
    """The highest malignant threshold (at most 0.5) at which at least `target_recall` of the
    malignant slices in `labels` have a malignant probability at or above it: sensitivity
    first, chosen on validation patients, never on the test split."""
    scores = np.sort(probabilities[labels == malignant, malignant])
    if len(scores) == 0:
        return 0.5
    allowed_misses = int(np.floor((1.0 - target_recall) * len(scores) + 1e-9))
    return float(min(0.5, scores[allowed_misses]))
