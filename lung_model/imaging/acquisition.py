"""How a slice was acquired and exported, measured; one common acquisition; and the changes
another scanner, reconstruction kernel or export would make.

This release's malignant patients were exported with about half the pixel noise of the
others (docs/MODEL.md, issue 19): a model can call a scan malignant because it is smooth.
This module is what the model family, its evaluation and the scoring guard use against that:

- `measure(gray)` -> `Acquisition`: the pixel noise (scikit-image's wavelet
  `estimate_sigma` on the 0..1 slice), the display window estimated from two tissue levels
  (aerated lung and soft tissue, found by `lung_model.imaging.lung_field.lung_masks` on
  block means; a wider window brings them closer together) and the matrix size.
  `acquisition_range` is the 1st..99th percentile of each measurement over training slices:
  what a model ships (metadata key "acquisition_range") and what scoring compares with.
- `harmonise(gray, config)` brings a slice to one common acquisition before either model
  family sees it: 512 rows, the aerated lung and soft tissue at fixed gray levels (a linear
  re-window; optionally clipped at a common ceiling), a fixed Gaussian blur that removes the
  export's own fine texture (with `levels_after_blur`, run 11's default model's setting,
  the blur comes first and the two levels are measured on it), then
  Gaussian noise added (or more smoothing) until the measured noise is the common level.
  The added noise is seeded by the slice's content, so one slice always gives one result
  (with `fixed_noise`, one pattern for every slice, so another export of it gets the same).
  The feature family may harmonise its lung-field crop instead, as today's default does
  (`lung_model.imaging.features.lung_crop`: `to_common` from the whole slice's tissue levels,
  with `levels_averaged` measured on block means; `levels_after_blur` is the whole slice's
  alone). `coarse_noise_level` measures the noise one scale up, where noise added at the
  finest scale leaves an export's (`coarse_noise` can bring it to a common level too).
- `PERTURBATIONS`: named, seeded functions that change a slice as another acquisition
  would (smoothed to the malignant noise level, noisier, a quarter of the dose, wider or
  narrower window, another level, JPEG re-compression, another matrix size): the
  acquisition-invariance check
  (`lung_model.training.invariance`) scores every evaluated slice under each.
  `random_acquisition` draws such changes at random: the training augmentation.

APIs: https://scikit-image.org/docs/stable/api/skimage.restoration.html#skimage.restoration.estimate_sigma,
https://scikit-image.org/docs/stable/api/skimage.util.html#skimage.util.random_noise,
https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.gaussian_filter.html,
https://pillow.readthedocs.io/en/stable/handbook/image-file-formats.html#jpeg-saving
"""

from __future__ import annotations

import functools
import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pywt
from PIL import Image
from scipy import ndimage
from skimage.util import img_as_float

from lung_model.imaging.crop import block_means
from lung_model.imaging.lung_field import LungMasks, lung_masks

MEASUREMENTS = ("noise", "window_width", "window_level", "rows", "cols")
MEASURE_VERSION = 2  # of `measure`: 2, the tissues found on block means (run 14)
MIN_SPAN = 0.05  # air-to-tissue gray span below which the window is not estimated (flat slice)
# the gray levels of aerated lung and soft tissue in this release's typical export (medians,
# issue 19): harmonise brings every slice's two levels here
COMMON_AIR, COMMON_TISSUE = 0.30, 0.83
# the body's gray-value quantiles (`match_probabilities(33)`) of this release's typical export:
# the median over its 266 training-split normal and benign slices at 512 rows
# (bench/derive_match_reference.py); `HarmoniseConfig(match=MATCH_REFERENCE)` maps every
# slice's body onto them (docs/MODEL.md, run 12)
MATCH_TAIL = 0.005  # the matched quantiles run from this probability to 1 - it
MATCH_REFERENCE = (
    0.235, 0.282, 0.310, 0.335, 0.361, 0.392, 0.455, 0.563, 0.682, 0.729, 0.745, 0.753, 0.761,
    0.769, 0.780, 0.788, 0.796, 0.808, 0.820, 0.827, 0.839, 0.847, 0.851, 0.859, 0.863, 0.871,
    0.878, 0.886, 0.894, 0.906, 0.929, 1.000, 1.000,
)  # fmt: skip
# the aerated lung's 17 quantiles, then the soft tissue's, likewise (the median over the 239
# of those slices where both are found): `HarmoniseConfig(match=..., match_compartments=True)`
MATCH_COMPARTMENTS_REFERENCE = (
    0.218, 0.259, 0.275, 0.286, 0.294, 0.302, 0.310, 0.322, 0.329, 0.341, 0.353, 0.365, 0.376,
    0.392, 0.412, 0.447, 0.503, 0.537, 0.725, 0.749, 0.765, 0.776, 0.788, 0.804, 0.820, 0.835,
    0.847, 0.855, 0.867, 0.875, 0.886, 0.906, 0.957, 1.000,
)  # fmt: skip
COARSE_STEP = 2  # the blocks whose means `coarse_noise_level` measures the noise of
FIXED_NOISE_SEED = 19  # `HarmoniseConfig.fixed_noise`'s pattern (issue 19)
MALIGNANT_NOISE = 0.0025  # this release's malignant slices: 0.0019..0.0038 (issue 19)
NORMAL_NOISE = 0.0070  # its normal slices' median
QUARTER_DOSE_NOISE = 2 * NORMAL_NOISE  # `quarter_dose`: noise doubles at a quarter of the dose
# scipy.stats.norm.ppf(0.75), estimate_sigma's divisor (a float64, as its result is)
MAD_TO_SIGMA = np.float64(0.6744897501960817)


@dataclass(frozen=True)
class Acquisition:
    """A slice's acquisition measurements. `window_width` is the display window's width in
    units of the aerated-lung-to-soft-tissue span (1 / their gray difference: a wider window
    gives a larger number), `window_level` the gray value midway between the two levels (a
    higher window level darkens the slice, lowering it)."""

    noise: float
    window_width: float
    window_level: float
    rows: int
    cols: int

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def tissue_levels(
    gray: np.ndarray, masks: LungMasks | None = None, averaged: bool = False
) -> tuple[float, float]:
    """(aerated lung, soft tissue) gray levels: the medians of the lung field's air and of
    the body's bright (above Otsu) pixels, on the masks' subsampled copy (`masks`: the
    slice's, when the caller has found them); `averaged`: on its block means instead, where
    the export's noise no longer moves the soft tissue's median (docs/MODEL.md, run 11)."""
    masks = lung_masks(gray) if masks is None else masks
    small = block_means(gray, masks.step) if averaged else gray[:: masks.step, :: masks.step]
    air, tissue = _compartments(small, masks)
    high = float(np.median(tissue)) if tissue.size else float(small.max())
    low = float(np.median(air)) if air.size else float(small.min())
    return low, high


def _compartments(small: np.ndarray, masks: LungMasks) -> tuple[np.ndarray, np.ndarray]:
    """The aerated lung's and the soft tissue's (the body above Otsu) gray values of the
    masks' copy `small`."""
    return small[masks.air], small[masks.body & (small > masks.threshold)]


def noise_level(gray: np.ndarray) -> float:
    """The pixel noise's standard deviation on the 0..1 scale: scikit-image's wavelet
    `estimate_sigma(gray)` (the median magnitude of the nonzero diagonal db2 detail
    coefficients, / 0.6745), from the diagonal band alone (the same number, 2.5x faster).
    Each transform runs along rows of a transposed copy: pywt's down-columns pass is 3x slower."""
    _, row_details = pywt.dwt(np.ascontiguousarray(gray.T), "db2", axis=1)  # along gray's axis 0
    _, diagonal = pywt.dwt(np.ascontiguousarray(row_details.T), "db2", axis=1)
    magnitudes = np.abs(diagonal)
    return float(np.median(magnitudes[magnitudes != 0]) / MAD_TO_SIGMA)


def coarse_noise_level(gray: np.ndarray) -> float:
    """The noise one scale up: `noise_level` of the 2 x 2 block means. A harmonisation that
    adds noise at the finest scale leaves what an export did here (docs/MODEL.md, run 13);
    fine anatomy counts here too."""
    return noise_level(block_means(gray, COARSE_STEP))


def measure(gray: np.ndarray) -> Acquisition:
    """The acquisition measurements of a (H, W) gray slice in [0, 1]. Its tissues are found
    on block means (`MEASURE_VERSION` 2): on every 4th pixel the noisiest exports lost their
    lungs, the air outside the body stood in for the lung's, and those 4% of the training
    slices stretched the window range a model ships from width 1.62 down to 1.38, wide
    enough to let a narrower export window through the scoring guard (docs/MODEL.md, run 14)."""
    air, tissue = tissue_levels(gray, lung_masks(gray, averaged=True))
    span = max(tissue - air, MIN_SPAN)
    return Acquisition(
        noise=noise_level(gray),
        window_width=1.0 / span,
        window_level=(air + tissue) / 2,
        rows=int(gray.shape[0]),
        cols=int(gray.shape[1]),
    )


def measurement_table(measured: Sequence[Acquisition]) -> np.ndarray:
    """(N, len(MEASUREMENTS)) float64, one row of measurements per slice."""
    return np.array([[getattr(m, k) for k in MEASUREMENTS] for m in measured], dtype=np.float64)


def acquisition_range(
    measured: Sequence[Acquisition], low: float = 1.0, high: float = 99.0
) -> dict[str, list[float]]:
    """[low, high] percentile of each measurement over `measured` (e.g. the training slices)."""
    if not measured:
        return {}
    bounds = np.percentile(measurement_table(measured), [low, high], axis=0)
    return {k: [float(bounds[0, i]), float(bounds[1, i])] for i, k in enumerate(MEASUREMENTS)}


@dataclass(frozen=True)
class HarmoniseConfig:
    """The common acquisition every slice is brought to (shipped with the model)."""

    rows: int = 512  # matrix: resized (bilinear) to this many rows, aspect kept
    air: float = COMMON_AIR
    tissue: float = COMMON_TISSUE
    # Gaussian sigma (px at `rows`) that removes the export's fine texture: 2 px lost the
    # malignant signal too (0.947 AUC, 40% of normal slices called malignant; run 7)
    blur: float = 1.0
    noise: float = 0.010  # the common noise level, above every export in this release
    # gray values above this are clipped after the re-window, so what a narrower export
    # window saturated is saturated in all (1.0: none). 0.86 made a narrower window change
    # fewer calls but called 19% of normal slices malignant against 9% (docs/MODEL.md, run 7): off
    ceiling: float = 1.0
    # the matrix made square (`rows` x `rows`, aspect not kept): odd matrix sizes occur only
    # among this release's malignant patients, and harmonised inputs still told them apart
    # by their columns (docs/MODEL.md, run 7's nuisance-only baseline)
    square: bool = False
    # the body's gray-value quantiles (`match_probabilities`, e.g. `MATCH_REFERENCE`)
    # every slice's body is mapped onto instead of the linear re-window (`air` and `tissue`
    # then unused); (): the re-window (docs/MODEL.md, run 12)
    match: tuple[float, ...] = ()
    # `match` holds the aerated lung's quantiles, then as many of the soft tissue's (the
    # body above its Otsu threshold), each compartment matched on its own, so a slice with
    # more lung than the reference is not brightened (`compartment_quantiles`; run 12)
    match_compartments: bool = False
    # the whole slice blurred first and its tissue levels measured on the blurred slice (then
    # re-windowed, not blurred again) instead of on the slice as exported: on it the
    # soft-tissue median of a noisier export lands elsewhere, so the re-windowed levels still
    # told the exports apart (docs/MODEL.md, run 11). Only where the whole slice is harmonised
    # (`harmonise`); the lung-field crop's counterpart is `levels_averaged`
    levels_after_blur: bool = False
    # the lung-field crop's tissue levels (`FeatureConfig.harmonise_at="crop"`) measured on
    # the block means of the masks' grid instead of its subsampled pixels, where the export's
    # noise no longer moves the soft tissue's median (`tissue_levels(averaged=True)`; run 11's
    # `-hcropb`, which named it `levels_after_blur`). The whole slice's `harmonise` refuses it
    levels_averaged: bool = False
    # the noise measured on 2 x 2 block means brought to this level too (0: not), by adding
    # noise constant over those blocks before the fine noise: the fine noise alone left the
    # export's correlated noise one scale up (docs/MODEL.md, run 13)
    coarse_noise: float = 0.0
    # the added noise one fixed pattern (`fixed_noise_field`) instead of one seeded by each
    # slice's content: with a content seed any other export of a slice, however slight, got a
    # new pattern over its texture, and the texture features moved with it
    fixed_noise: bool = False

    def to_dict(self) -> dict[str, Any]:
        # as configs were logged (and benchmarks cached) before these existed
        return _without_unset(asdict(self), ("square", *LATER))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HarmoniseConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown harmonisation settings: {sorted(unknown)}")
        default = cls()
        return cls(**{k: type(getattr(default, k))(v) for k, v in values.items()})


# settings left out of the dicts while unset (configs were logged and cached before them)
LATER = (
    "match",
    "levels_after_blur",
    "match_compartments",
    "levels_averaged",
    "coarse_noise",
    "fixed_noise",
)


def nested_dict(config: HarmoniseConfig | None) -> dict[str, Any] | None:
    """`config` as the feature and preprocessing configs log it inside theirs (and the CV
    bench keys its caches): every field but the unset ones of `LATER`, which came later."""
    return None if config is None else _without_unset(asdict(config), LATER)


def _without_unset(values: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in names or v}


def content_seed(gray: np.ndarray) -> int:
    """A seed from the slice's pixels: the same slice always gets the same added noise."""
    return zlib.crc32(np.ascontiguousarray(gray, dtype=np.float32).data)  # its bytes, not copied


def resize_rows(gray: np.ndarray, rows: int) -> np.ndarray:
    """`gray` resized (bilinear, aspect kept) to `rows` rows; unchanged when it has them."""
    if gray.shape[0] == rows:
        return gray.astype(np.float32, copy=False)
    cols = max(1, round(gray.shape[1] * rows / gray.shape[0]))
    image = Image.fromarray(gray.astype(np.float32), mode="F")
    resized = image.resize((cols, rows), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def rewindow(
    gray: np.ndarray, air: float, tissue: float, to_air: float, to_tissue: float
) -> np.ndarray:
    """The linear map taking gray levels `air` and `tissue` to `to_air` and `to_tissue`,
    clipped to [0, 1], as re-exporting with another display window would."""
    scale = (to_tissue - to_air) / max(tissue - air, MIN_SPAN)
    out = gray - air
    out *= scale
    out += to_air
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def smooth_to(
    gray: np.ndarray, noise: float, steps: int = 8, present: float | None = None
) -> np.ndarray:
    """`gray` smoothed with the Gaussian whose sigma (bisected) brings its measured noise
    down to `noise`; unchanged when it is already at or below it (`present`: its noise,
    when the caller has measured it)."""
    if (noise_level(gray) if present is None else present) <= noise:
        return gray.astype(np.float32, copy=False)
    gray = gray.astype(np.float32, copy=False)
    low, high = 0.0, 4.0
    best = None  # the widest blur, 4 px, only when no narrower one gets there
    for _ in range(steps):
        middle = (low + high) / 2
        smoothed = ndimage.gaussian_filter(gray, middle)
        if noise_level(smoothed) > noise:
            low = middle
        else:
            high, best = middle, smoothed
    return ndimage.gaussian_filter(gray, high) if best is None else best


@functools.cache
def _square_field(side: int) -> np.ndarray:
    field = np.random.default_rng(FIXED_NOISE_SEED).standard_normal((side, side))
    field.flags.writeable = False
    return field


def fixed_noise_field(shape: tuple[int, ...]) -> np.ndarray:
    """One standard-normal pattern for every slice, cut to `shape` from the top left of a
    square as wide as its longer side: slices of the same longer side (the feature model's
    crops, `FeatureConfig.crop_side`) share the pattern where they overlap."""
    return _square_field(max(shape))[: shape[0], : shape[1]]


def noise_to(
    gray: np.ndarray,
    noise: float,
    seed: int,
    present: float | None = None,
    fixed: bool = False,
) -> np.ndarray:
    """`gray` with Gaussian noise added until its measured noise is `noise` (independent
    noise adds in variance); unchanged when it is already at or above it. `present`: its
    noise level when already measured; `fixed`: the noise is `fixed_noise_field`, scaled,
    and `seed` is not used."""
    present = noise_level(gray) if present is None else present
    if present >= noise:
        return gray.astype(np.float32, copy=False)
    variance = noise**2 - present**2
    # skimage's random_noise(gray, mode="gaussian", var=variance, rng=seed, clip=True): the
    # same draws, sum and clip, without its full-size copies for the modes not used
    low = -1.0 if gray.min() < 0 else 0.0
    if fixed:
        noisy = fixed_noise_field(gray.shape) * variance**0.5
    else:
        noisy = np.random.default_rng(seed).normal(0.0, variance**0.5, gray.shape)
    noisy += img_as_float(gray)
    return np.clip(noisy, low, 1.0, out=noisy).astype(np.float32)


def coarse_noise_to(gray: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """`gray` with Gaussian noise constant over 2 x 2 blocks added until its noise one scale
    up (`coarse_noise_level`) is `noise`; unchanged when it is already at or above it. Drawn
    from its own stream of `seed`, apart from the fine noise's."""
    present = coarse_noise_level(gray)
    if present >= noise:
        return gray.astype(np.float32, copy=False)
    rows, cols = -(-gray.shape[0] // COARSE_STEP), -(-gray.shape[1] // COARSE_STEP)
    blocks = np.random.default_rng([seed, COARSE_STEP]).normal(
        0.0, (noise**2 - present**2) ** 0.5, (rows, cols)
    )
    spread = np.repeat(np.repeat(blocks, COARSE_STEP, axis=0), COARSE_STEP, axis=1)
    return np.clip(gray + spread[: gray.shape[0], : gray.shape[1]], 0.0, 1.0).astype(np.float32)


def match_probabilities(count: int) -> np.ndarray:
    """The probabilities of a matching reference's `count` quantiles: the 0.5th to the 99.5th
    percentile, evenly spaced."""
    return np.linspace(MATCH_TAIL, 1.0 - MATCH_TAIL, count)


def body_quantiles(gray: np.ndarray, count: int, masks: LungMasks | None = None) -> np.ndarray:
    """`count` quantiles (`match_probabilities`) of the body's gray values, on the masks'
    subsampled copy (the whole copy when no body is found)."""
    masks = lung_masks(gray) if masks is None else masks
    small = gray[:: masks.step, :: masks.step]
    values = small[masks.body] if masks.body.any() else small.ravel()
    return np.quantile(values, match_probabilities(count))


def compartment_quantiles(gray: np.ndarray, count: int, masks: LungMasks) -> np.ndarray | None:
    """`count` quantiles (`match_probabilities`) of the aerated lung's gray values, then
    `count` of the soft tissue's (the body above the Otsu threshold), on the masks' copy;
    None when either is empty."""
    air, tissue = _compartments(gray[:: masks.step, :: masks.step], masks)
    if not air.size or not tissue.size:
        return None
    probabilities = match_probabilities(count)
    return np.concatenate([np.quantile(air, probabilities), np.quantile(tissue, probabilities)])


def match_reference(
    gray: np.ndarray,
    reference: Sequence[float],
    masks: LungMasks | None = None,
    compartments: bool = False,
) -> np.ndarray | None:
    """`gray` mapped monotonically so that its body's quantiles become `reference`'s (with
    `compartments`, its aerated lung's and soft tissue's, `compartment_quantiles`; None
    when either is missing): piecewise linear between them, clamped beyond (the air outside
    the body and the extreme 0.5% of the body's pixels take the end values, whatever their
    export made of them). Quantiles tied by saturation map to the mean of their reference
    values."""
    masks = lung_masks(gray) if masks is None else masks
    if compartments:
        found = compartment_quantiles(gray, len(reference) // 2, masks)
        if found is None:
            return None
        source = found
    else:
        source = body_quantiles(gray, len(reference), masks)
    source, tie = np.unique(source, return_inverse=True)
    target = np.bincount(tie, weights=np.asarray(reference, dtype=np.float64)) / np.bincount(tie)
    return np.interp(gray, source, target).astype(np.float32)


def harmonise(gray: np.ndarray, config: HarmoniseConfig) -> np.ndarray:
    """(H, W) gray in [0, 1] at the common acquisition (`config`): `config.rows` rows,
    re-windowed to the common tissue levels (or its body matched to `config.match`),
    blurred, noise brought to `config.noise`."""
    if config.levels_averaged:
        raise ValueError(
            "levels_averaged is the lung-field crop's (FeatureConfig.harmonise_at='crop')"
        )
    seed = content_seed(gray)
    out = resize_rows(gray, config.rows)
    if config.square and out.shape[1] != config.rows:
        image = Image.fromarray(out, mode="F")
        image = image.resize((config.rows, config.rows), Image.Resampling.BILINEAR)
        out = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if config.match:
        masks = lung_masks(out)
        matched = match_reference(out, config.match, masks, config.match_compartments)
        if matched is not None:
            return to_common(matched, None, config, seed)
        return to_common(out, tissue_levels(out, masks), config, seed)  # no lung: re-windowed
    if config.levels_after_blur and config.blur > 0:
        out = ndimage.gaussian_filter(out, config.blur)
        return to_common(out, tissue_levels(out), replace(config, blur=0.0), seed)
    return to_common(out, tissue_levels(out), config, seed)


def to_common(
    gray: np.ndarray, levels: tuple[float, float] | None, config: HarmoniseConfig, seed: int
) -> np.ndarray:
    """`gray` (already at its matrix) re-windowed from its (air, tissue) `levels` to the
    common ones (None: already at the common gray levels), clipped at the ceiling, blurred
    and brought to the common noise (`seed`: the added noise's)."""
    out = gray.astype(np.float32, copy=False)
    if levels is not None and levels[1] - levels[0] >= MIN_SPAN:
        out = rewindow(out, *levels, config.air, config.tissue)
    if config.ceiling < 1.0:
        out = np.minimum(out, config.ceiling)
    if config.blur > 0:
        out = ndimage.gaussian_filter(out, config.blur)
    if config.coarse_noise > 0:
        out = coarse_noise_to(out, config.coarse_noise, seed)
    present = noise_level(out)
    if present > config.noise:
        return smooth_to(out, config.noise, present=present)
    return noise_to(out, config.noise, seed, present, config.fixed_noise)


# -- the changes another acquisition would make (the invariance check's perturbations) --


def smoothed(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smoothed to this release's malignant noise level (a softer kernel or export)."""
    return smooth_to(gray, MALIGNANT_NOISE)


def noisier(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Noise added up to this release's normal noise level (a sharper kernel, lower dose)."""
    return noise_to(gray, NORMAL_NOISE, seed)


def quarter_dose(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Noise added up to twice this release's normal noise level, as a quarter of the dose
    gives (quantum noise goes as 1 / sqrt(dose)): a low-dose screening protocol. `noisier`
    stops at the normal level, so it left a normal slice as it was."""
    return noise_to(gray, QUARTER_DOSE_NOISE, seed)


def _around_mean(gray: np.ndarray, factor: float, shift: float = 0.0) -> np.ndarray:
    mean = float(gray.mean())
    return np.clip((gray - mean) * factor + mean + shift, 0.0, 1.0).astype(np.float32)


def wider_window(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Contrast compressed by 0.6 around the mean, as a window 1.7x wider exports it."""
    return _around_mean(gray, 0.6)


def narrower_window(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Contrast stretched by 1.3 around the mean (clipped), a narrower window."""
    return _around_mean(gray, 1.3)


def higher_level(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every gray value 0.08 lower (clipped), as a window level ~8% of its width higher."""
    return _around_mean(gray, 1.0, -0.08)


def jpeg_recompressed(gray: np.ndarray, seed: int = 0, quality: int = 70) -> np.ndarray:
    """Re-exported as an 8-bit JPEG of `quality` and decoded again."""
    buffer = io.BytesIO()
    pixels = np.round(np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def smaller_matrix(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Resampled (bilinear) to 3/4 of its rows and columns: another matrix size."""
    return resize_rows(gray, max(1, round(gray.shape[0] * 0.75)))


CONTRAST_RANGE = (0.6, 1.3)  # the augmentation's contrast factors (a wider / narrower window)
NOISE_RANGE = (0.0015, 0.012)  # the augmentation's noise levels (0..1 scale)


def random_acquisition(
    gray: np.ndarray,
    seed: int,
    contrast: tuple[float, float] = CONTRAST_RANGE,
    noise: tuple[float, float] = NOISE_RANGE,
) -> np.ndarray:
    """`gray` as a random other acquisition would give it (training augmentation): the
    noise brought to a level drawn from `noise`, the contrast scaled by a factor
    drawn from `contrast` (clipped: above 1 a narrower window saturates) and the level moved
    by -0.06..0.06, the matrix 0.7..1 of its rows, then a JPEG export of quality 50..95, each
    step drawn with probability 1/2 (the noise step always)."""
    rng = np.random.default_rng(seed)
    target = float(rng.uniform(*noise))
    present = noise_level(gray)
    out = smooth_to(gray, target, steps=5, present=present) if present > target else gray
    out = noise_to(out, target, int(rng.integers(2**31)))
    if rng.random() < 0.5:
        out = _around_mean(out, float(rng.uniform(*contrast)), float(rng.uniform(-0.06, 0.06)))
    if rng.random() < 0.5:
        out = resize_rows(out, max(1, round(out.shape[0] * float(rng.uniform(0.7, 1.0)))))
    if rng.random() < 0.5:
        out = jpeg_recompressed(out, quality=int(rng.integers(50, 96)))
    return out.astype(np.float32, copy=False)


Perturbation = Callable[[np.ndarray, int], np.ndarray]
PERTURBATIONS: dict[str, Perturbation] = {
    "smoothed": smoothed,
    "noisier": noisier,
    "quarter_dose": quarter_dose,
    "wider_window": wider_window,
    "narrower_window": narrower_window,
    "higher_level": higher_level,
    "jpeg": jpeg_recompressed,
    "smaller_matrix": smaller_matrix,
}
