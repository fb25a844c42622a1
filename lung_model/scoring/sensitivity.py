"""Acquisition sensitivity: does the served model's call on a slice change when only the
acquisition does?

This release's malignant patients were exported differently from the others, and a model can
read that export instead of the lesion (docs/MODEL.md, run 7). So for the slices the
acquisition guard measures (`guard`: `LUNG_GUARD_SLICES` a study, already decoded at full
resolution), the scorer also scores each under a few of
`lung_model.imaging.acquisition.PERTURBATIONS` (`LUNG_GUARD_PERTURBATIONS`; by default the
two that change the most calls of the default model in runs 7 and 9, a narrower display window
and a smaller matrix; `smoothed` can be added, at about 0.1 s of CPU a slice) with the same
model and its own slice rule. A slice
"changes" when its call under some perturbation differs from its call unperturbed. The study
result records how many of its checked slices change (`Sensitivity`): a study whose calls
hang on the export is one a clinician's review teaches the model most about (the worklist's
"teach the model" order, `lung_model.review.worklist`). The perturbations are deterministic
(seeded by the slice's pixels), so the same slice and model always give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# the unperturbed call at full resolution, recorded when the served slice was decoded down
# (a CNN's JPEG, `LoadedModel.reduce_to`): the perturbed calls are compared with it, so that
# the resolution alone is never counted as a change
FULL_RESOLUTION = "full_resolution"
# the share of checked slices whose call changes from which a study counts as sensitive to
# its export (3 of 12 slices): warned of on the Study page, counted on Operations and by
# lung_monitoring
HIGH_SENSITIVITY = 0.25


def chosen(setting: str) -> tuple[str, ...]:
    """The perturbation names of `LUNG_GUARD_PERTURBATIONS` ('a,b'); () when empty."""
    from lung_model.imaging.acquisition import PERTURBATIONS

    names = tuple(name.strip() for name in setting.split(",") if name.strip())
    if unknown := [name for name in names if name not in PERTURBATIONS]:
        raise ValueError(
            f"LUNG_GUARD_PERTURBATIONS: unknown {unknown}; known: {', '.join(PERTURBATIONS)}"
        )
    return names


def perturbed_inputs(
    gray: np.ndarray,
    prepare: Callable[[np.ndarray], np.ndarray],
    names: Sequence[str],
    reduced: bool,
) -> dict[str, np.ndarray]:
    """The model inputs of the full-resolution slice `gray` under each perturbation (seeded
    by its pixels), and unperturbed (`FULL_RESOLUTION`) when the served input was `reduced`."""
    from lung_model.imaging.acquisition import PERTURBATIONS, content_seed

    seed = content_seed(gray)
    inputs = {name: prepare(PERTURBATIONS[name](gray, seed)) for name in names}
    if reduced:
        inputs[FULL_RESOLUTION] = prepare(gray)
    return {name: np.asarray(x, dtype=np.float32) for name, x in inputs.items()}


@dataclass(frozen=True)
class Sensitivity:
    """A study's check: the perturbations, the slices checked and, per slice whose call
    changed, the perturbations that changed it."""

    perturbations: tuple[str, ...]
    n_slices: int
    changed: dict[str, list[str]] = field(default_factory=dict)  # slice path -> perturbations

    @property
    def n_changed(self) -> int:
        return len(self.changed)

    @property
    def share(self) -> float:
        """The share of checked slices whose call changes under some perturbation."""
        return self.n_changed / self.n_slices if self.n_slices else 0.0

    def by_perturbation(self) -> dict[str, int]:
        """{perturbation: slices whose call it changes}, in the order checked."""
        return {p: sum(p in names for names in self.changed.values()) for p in self.perturbations}

    def describe(self) -> str:
        """'calls change under another export on 3 of 12 slices (smoothed 2, narrower
        window 1)'; 'calls do not change under another export (12 slices: smoothed, ...)'."""
        if not self.changed:
            tried = ", ".join(p.replace("_", " ") for p in self.perturbations)
            return f"calls do not change under another export ({self.n_slices} slices: {tried})"
        counts = ", ".join(
            f"{p.replace('_', ' ')} {n}" for p, n in self.by_perturbation().items() if n
        )
        return (
            f"calls change under another export on {self.n_changed} of {self.n_slices}"
            f" slices ({counts})"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Sensitivity:
        return cls(tuple(values["perturbations"]), int(values["n_slices"]), dict(values["changed"]))


def check_study(
    slices: Iterable[tuple[str, str, Mapping[str, str]]], perturbations: Sequence[str]
) -> Sensitivity | None:
    """The study's sensitivity from (path, call, calls under each perturbation) of its
    checked slices; None when none was checked."""
    n_slices, changed = 0, {}
    for path, call, perturbed in slices:
        base = perturbed.get(FULL_RESOLUTION, call)
        n_slices += 1
        if moved := [p for p in perturbations if p in perturbed and perturbed[p] != base]:
            changed[path] = moved
    return Sensitivity(tuple(perturbations), n_slices, changed) if n_slices else None


def described(stored: Mapping[str, Any] | None) -> str:
    """A study result's stored sensitivity in words; '' when it was not checked."""
    return Sensitivity.from_dict(stored).describe() if stored else ""


def changed_on(stored: Mapping[str, Any] | None, path: str) -> str:
    """'smoothed, narrower window': the perturbations that change the call on the slice at
    `path` (as stored); '' when none does or it was not checked."""
    return ", ".join(p.replace("_", " ") for p in (stored or {}).get("changed", {}).get(path, []))


def slices_changed(stored: Mapping[str, Any] | None) -> str:
    """'3 of 12 slices': on how many checked slices another export changes the call (the
    worklist's column); '' when the study was not checked."""
    if not stored:
        return ""
    checked = Sensitivity.from_dict(stored)
    return f"{checked.n_changed} of {checked.n_slices} slices"
