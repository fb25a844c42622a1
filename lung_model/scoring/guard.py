"""The acquisition guard: is a study like the scans its model learned from?

A model ships in its metadata the range of acquisition measurements of its training slices
(`acquisition_range`, `lung_model.imaging.acquisition.acquisition_range`: for each
measurement of `Acquisition` (pixel noise, the estimated display window's width and level,
the matrix's rows and columns) its [low, high]). For such a model the scorer measures every
slice it decodes (`lung_model.imaging.acquisition.measure`), and a study is "unlike the scans
this model learned from" when, on some measurement, at least `LUNG_GUARD_MIN_SHARE` of its
measured slices lie outside that range. Measuring costs about as much as computing the
feature model's features (a wavelet noise estimate and the lung masks, ~23 ms a 512 px
slice), so a study is judged by `LUNG_GUARD_SLICES` slices spread evenly through it: one
export per study makes them representative, and a long series costs a few percent more. The study is still scored; its result records which
measurements, how many slices and how far outside (`Deviation`). A model logged without a
range is unguarded: nothing is measured, nothing recorded, scoring is as before.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Range = dict[str, tuple[float, float]]
Measure = Callable[[np.ndarray, int, int], dict[str, float]]

UNLIKE_TRAINING = "unlike the scans this model learned from"
MEASUREMENTS = {
    "noise": "pixel noise",
    "window_width": "display window width",
    "window_level": "display window level",
    "rows": "matrix rows",
    "cols": "matrix columns",
}


def parse_range(values: Mapping[str, Sequence[float]] | None) -> Range | None:
    """A model's `acquisition_range` metadata as {measurement: (low, high)}; None when absent."""
    if not values:
        return None
    return {name: (float(low), float(high)) for name, (low, high) in values.items()}


def model_range(model: object) -> Range | None:
    """The acquisition range the model learned from; None: an unguarded model."""
    return parse_range(getattr(model, "acquisition_range", None))


def measure_slice(gray: np.ndarray, height: int, width: int) -> dict[str, float]:
    """A decoded slice's acquisition measurements; the matrix is the file's own size (a JPEG
    may have been decoded down for a CNN, `LoadedModel.reduce_to`)."""
    from lung_model.imaging.acquisition import measure

    measured = measure(gray).as_dict()
    return {**measured, "rows": float(height), "cols": float(width)}


def spread(paths: Sequence[str], count: int) -> set[str]:
    """`count` of the study's slice paths spread evenly through it (every one when fewer)."""
    if count <= 0:
        return set()
    if len(paths) <= count:
        return set(paths)
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return {paths[i] for i in picks}


def outside(measured: Mapping[str, float], allowed: Range) -> list[str]:
    """The measurements of one slice that lie outside the range, in the range's order."""
    return [
        name
        for name, (low, high) in allowed.items()
        if name in measured and not low <= measured[name] <= high
    ]


@dataclass(frozen=True)
class Deviation:
    """One measurement on which a study lies outside its model's range."""

    measurement: str
    side: str  # "below" or "above" the range (where most of the outside slices lie)
    value: float  # the median over the slices outside on that side
    low: float
    high: float
    n_outside: int  # slices outside on either side
    n_slices: int  # slices measured

    @property
    def bound(self) -> float:
        return self.low if self.side == "below" else self.high

    def describe(self) -> str:
        """'pixel noise 0.0012, 33% below the lowest this model learned from (range
        0.0018 to 0.0075); 9 of 10 slices outside'."""
        name = MEASUREMENTS.get(self.measurement, self.measurement)
        extreme = "lowest" if self.side == "below" else "highest"
        if self.bound:
            far = f"{abs(self.value / self.bound - 1):.0%} {self.side} the {extreme}"
        else:
            far = f"{abs(self.value - self.bound):.4g} {self.side} the {extreme}"
        return (
            f"{name} {self.value:.4g}, {far} this model learned from (range {self.low:.4g} to"
            f" {self.high:.4g}); {self.n_outside} of {self.n_slices} slices outside"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Deviation:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__})


def check_study(
    measured: Sequence[Mapping[str, float]], allowed: Range, min_share: float
) -> list[Deviation]:
    """The measurements on which at least `min_share` of the study's slices lie outside."""
    deviations = []
    for name, (low, high) in allowed.items():
        values = [m[name] for m in measured if name in m]
        below = [v for v in values if v < low]
        above = [v for v in values if v > high]
        n_outside = len(below) + len(above)
        if not values or not n_outside or n_outside < min_share * len(values):
            continue
        side, beyond = ("below", below) if len(below) >= len(above) else ("above", above)
        value = float(statistics.median(beyond))
        deviations.append(Deviation(name, side, value, low, high, n_outside, len(values)))
    return deviations


def unlike_training(stored: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """Why a study result is unlike the scans its model learned from, from its stored
    deviations: one line per measurement (`Deviation.describe`); [] when like them or
    unguarded."""
    return [Deviation.from_dict(d).describe() for d in stored or []]


def summary_line(stored: Sequence[Mapping[str, Any]] | None) -> str:
    """A study result's stored deviations in a few words: 'pixel noise below, matrix rows
    above'; '' when inside the range or unguarded."""
    if not stored:
        return ""
    return ", ".join(
        f"{MEASUREMENTS.get(d['measurement'], d['measurement'])} {d['side']}" for d in stored
    )
