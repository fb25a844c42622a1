"""Which features keep their value when the same slice is acquired another way (issue 19).

The radiomics field screens features by their reproducibility under image perturbation
(Zwanenburg et al. 2019, "Assessing robustness of radiomic features by image perturbation",
Sci Rep 9:614): each feature's intraclass correlation over the same slices measured under
several acquisitions, keeping the features above a floor. Here the acquisitions are each
training slice and its randomly re-acquired copies (`lung_model.training.reacquire`), which
the trees learn from anyway: no held-out slice, label or evaluation perturbation is used.
"""

from __future__ import annotations

import numpy as np

from lung_model.training.fit import Part


def icc(values: np.ndarray) -> np.ndarray:
    """One-way random, single-measurement ICC(1,1) (Shrout & Fleiss 1979) of each feature:
    (slices, acquisitions, features) -> (features,); 1 for a feature no slice varies in."""
    n, k, _ = values.shape
    means = values.mean(axis=1)
    between = k * ((means - means.mean(axis=0)) ** 2).sum(axis=0) / (n - 1)
    within = ((values - means[:, None, :]) ** 2).sum(axis=(0, 1)) / (n * (k - 1))
    total = between + (k - 1) * within
    return np.where(total > 0, (between - within) / np.where(total > 0, total, 1), 1.0)


def acquisition_icc(original: Part, copies: Part) -> np.ndarray:
    """Each feature's ICC over the `original` slices and their re-acquired `copies` (each
    copy's path is its slice's; every slice has the same number of copies)."""
    row = {path: i for i, path in enumerate(original.paths)}
    owner = np.array([row[path] for path in copies.paths])
    per_slice = len(owner) // len(original.paths)
    order = np.argsort(owner, kind="stable")
    again = copies.x[order].reshape(len(original.paths), per_slice, -1)
    return icc(np.concatenate([original.x[:, None, :], again], axis=1).astype(np.float64))


def stable_columns(original: Part, copies: Part, floor: float) -> tuple[int, ...]:
    """The feature columns whose acquisition ICC reaches `floor`."""
    return tuple(int(i) for i in np.flatnonzero(acquisition_icc(original, copies) >= floor))
