"""Lung-field features of one CT slice: the input of the lung-field feature model family.

`slice_features(gray, config)` takes a decoded slice at FULL resolution
(`lung_model.imaging.images.read_gray(path).gray`: a DCT-reduced decode averages away the
fine texture the model relies on), finds its lung field (`lung_model.imaging.lung_field`),
cuts that box out, resizes it to `crop_side` px and returns, in `feature_names` order:

- nod_  dense structures inside the lung field (tissue-bright, not aerated, 8-connected):
        the largest's and the three largest's share of the field, how many exceed each of
        `nodule_shares`, and the dense share;
- log_  Laplacian of Gaussian, sigma 1.5, 3, 6, 12 crop px (a Gaussian of sigma 1.5 then a
        5-point Laplacian on each level of a 2x2-mean pyramid, scaled by -sigma², so bright
        blobs are positive), inside the field: max, 99th and 95th order statistic, mean, sd;
- int_  intensity order statistics, mean and sd inside the field;
- glcm_, lbp_  texture of the whole crop, or of the lung field only (`texture_region`)
              (`lung_model.imaging.texture`).

`features_and_crop` also hands back the crop they were read from (`seen_crop`'s gray), whose
acquisition training measures.

`nodule_candidates` returns the dense structures the nod_ features measured, outlined in the
input's pixel coordinates, for display. Training may pass a reviewer's lesion mark
(`LesionPoint`): nod_largest then measures the candidate at the mark instead of the largest,
and nod_top3 that one with the two largest others (`marked_candidate`); serving never has a
mark and computes exactly what it did. Which candidate is at a mark has one definition,
`candidate_at_mark`, for training and for the study page's explanation: the nearest to the
marked centre, measured to its pixels in the slice's pixels, within the mark's reach. Research and cross-validation: issue 12, variant
"fast6a". APIs: https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.gaussian_filter.html,
https://docs.scipy.org/doc/scipy/reference/generated/scipy.ndimage.laplace.html,
https://scikit-image.org/docs/stable/api/skimage.measure.html#skimage.measure.find_contours
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

from lung_model.imaging.acquisition import (
    MIN_SPAN,
    HarmoniseConfig,
    content_seed,
    harmonise,
    nested_dict,
    rewindow,
    tissue_levels,
    to_common,
)
from lung_model.imaging.lung_field import (
    LungCrop,
    crop_lung_field,
    lung_masks,
    with_missing_lung,
)
from lung_model.imaging.texture import GLCM_PROPERTIES, LBP_BINS, glcm_features, lbp_histogram

# 2: optional harmonisation to one common acquisition first (issue 19); a v1 config (models
# logged before) has none and computes exactly what it did
FEATURES_VERSION = 2
READABLE_VERSIONS = (1, 2)
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
# the common acquisition of the lung-field crop (`harmonise_at="crop"`, 192 px): a 0.75 crop-px
# blur (a 512-row slice's lung box is ~2-2.7x the crop, so about the whole-slice 1 px with the
# resize's own averaging) leaves the crop noise of 99% of normal and every benign and
# malignant slice sampled below 0.010 (0.5 px left 10% of normal slices above, up to 0.03),
# and 0.010 is the level noise is brought to (docs/MODEL.md, run 10)
CROP_HARMONISE = HarmoniseConfig(blur=0.75, noise=0.010)
# how far from a centre marked without an extent a candidate may lie and still be the one
# marked, as a share of the slice's longer side (the ring `review.marks` draws for such a mark)
MARK_REACH = 1 / 40


@dataclass(frozen=True)
class FeatureConfig:
    # the lung-field crop's longer side: 128 to 256 px are equal within fold noise in grouped
    # cross-validation; 192 kept every slice and study figure and costs 3/4 of 256's time
    # (docs/MODEL.md, run 5)
    crop_side: int = 192
    mask_side: int = 128  # the masks' copy's longer side (about)
    # the masks found on block means, not every step-th pixel (`lung_masks`' `averaged`): on
    # the noisiest exports (27 normal slices, 1 benign, no malignant one) the strided copy
    # lost the lung field, and the features read the body instead (docs/MODEL.md, run 14)
    mask_averaged: bool = False
    # a lung the air could not find (consolidated, collapsed, tumour-filled, or outside a body
    # whose wall is too thin) added as the mirror image of the one found (`with_missing_lung`):
    # the crop had cut it off, lesion and all (docs/MODEL.md, run 17)
    mirror_missing_lung: bool = False
    close_radius: float = 40.0  # full-resolution px (lung_model.imaging.lung_field)
    nodule_shares: tuple[float, ...] = (0.001, 0.005, 0.02)  # of the lung field
    log_sigma: float = 1.5  # crop px, doubled at each pyramid level
    log_levels: int = 4
    intensity_percentiles: tuple[int, ...] = (1, 5, 25, 50, 75, 95, 99)
    glcm_levels: int = 32
    glcm_distances: tuple[int, ...] = (1, 3, 6)
    # the common acquisition the slice is brought to first (`lung_model.imaging.acquisition.
    # harmonise`); None: the slice as decoded (every model logged before features v2)
    harmonise: HarmoniseConfig | None = None
    # the feature groups computed (`FEATURE_GROUPS` keys, in that order): ("nod", "log")
    # keeps the lesion candidates' features only, no intensity or whole-crop texture
    groups: tuple[str, ...] = ("nod", "log", "int", "glcm", "lbp")
    # where glcm_ and lbp_ are measured: "crop", the whole lung-field crop (chest wall and
    # mediastinum included), or "field", the filled lung field only (issue 19: a narrower
    # export window saturates the bright tissue around the lungs, which moved the whole
    # crop's GLCM energy and entropy by 2 sd of the malignant-normal spread)
    texture_region: str = "crop"
    # glcm_ and lbp_ read the crop clipped at this gray level (1.0: not clipped): a narrower
    # export saturates the bright tissue at about 0.86 once harmonised, which the texture
    # read as smooth (docs/MODEL.md, run 11)
    texture_ceiling: float = 1.0
    version: int = FEATURES_VERSION
    # where `harmonise` applies: "slice", the whole slice at its `rows` before the lung field
    # is found; "crop", the lung-field crop of the slice as decoded (re-windowed with the
    # whole slice's tissue levels, then blurred and noised at crop resolution: ~7x fewer
    # pixels, so `harmonise.blur` is in crop px and `harmonise.noise` a crop-resolution level,
    # e.g. `CROP_HARMONISE`; issue 19's scoring cost, docs/MODEL.md run 10). The levels are
    # measured on block means with `harmonise.levels_averaged`; the whole slice's
    # `levels_after_blur` is refused here
    harmonise_at: str = "slice"

    def __post_init__(self) -> None:
        if self.harmonise_at not in ("slice", "crop"):
            raise ValueError(f"harmonise_at is 'slice' or 'crop', not {self.harmonise_at!r}")
        if self.harmonise is None:
            return
        crop = self.harmonise_at == "crop"
        if crop and self.harmonise.match:
            raise ValueError("matching a reference (harmonise.match) needs harmonise_at='slice'")
        if crop and self.harmonise.levels_after_blur:
            raise ValueError(
                "harmonise.levels_after_blur blurs the whole slice (harmonise_at='slice'); "
                "the crop's levels from block means are harmonise.levels_averaged"
            )
        if not crop and self.harmonise.levels_averaged:
            raise ValueError("harmonise.levels_averaged needs harmonise_at='crop'")

    def to_dict(self) -> dict[str, Any]:
        values = {**asdict(self), "harmonise": nested_dict(self.harmonise)}
        if self.harmonise_at == "slice":  # as configs were logged (and benchmarks cached) before
            del values["harmonise_at"]
        if self.texture_ceiling == 1.0:
            del values["texture_ceiling"]
        if not self.mask_averaged:
            del values["mask_averaged"]
        if not self.mirror_missing_lung:
            del values["mirror_missing_lung"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FeatureConfig:
        if values.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"model needs features v{values.get('version')}, this is v{FEATURES_VERSION}"
            )
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown feature settings: {sorted(unknown)}")
        default = cls()
        rest = {k: _like(getattr(default, k), v) for k, v in values.items() if k != "harmonise"}
        common = values.get("harmonise")
        return cls(**rest, harmonise=None if common is None else HarmoniseConfig.from_dict(common))


def _like(default: Any, value: Any) -> Any:
    """`value` (e.g. read back from JSON) in the type of the default."""
    if isinstance(default, tuple):
        return tuple(type(default[0])(v) for v in value)
    return type(default)(value)


def feature_names(config: FeatureConfig) -> list[str]:
    """The names of the features `slice_features` computes, in its order."""
    return [n for n in _all_names(config) if n.split("_", 1)[0] in config.groups]


def _all_names(config: FeatureConfig) -> list[str]:
    sigmas = [config.log_sigma * 2**k for k in range(config.log_levels)]
    return [
        "nod_largest",
        "nod_top3",
        *(f"nod_n{s:g}" for s in config.nodule_shares),
        "nod_dense",
        *(f"log_s{s:g}_{k}" for s in sigmas for k in ("max", "p99", "p95", "mean", "sd")),
        *(f"int_p{q}" for q in config.intensity_percentiles),
        "int_mean",
        "int_sd",
        *(f"glcm_{p}_d{d}" for p in GLCM_PROPERTIES for d in config.glcm_distances),
        *(f"lbp_{i}" for i in range(LBP_BINS)),
    ]


def model_gray(gray: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The slice the lung field is found on: harmonised when the config harmonises the whole
    slice. (A config unpickled from a model logged before v2 has no `harmonise` of its own
    and reads the class default, None; before run 10, no `harmonise_at`: "slice".)"""
    if config.harmonise is None or config.harmonise_at == "crop":
        return gray
    return harmonise(gray, config.harmonise)


def seen_crop(gray: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The lung-field crop the features read, harmonised as `config` says: what the
    nuisance-only baseline measures. Measured on the whole harmonised slice instead, the
    export's noise looked gone while the crop still carried it (docs/MODEL.md, run 11)."""
    return lung_crop(model_gray(gray, config), config).gray


def lung_crop(gray: np.ndarray, config: FeatureConfig) -> LungCrop:
    masks = lung_masks(gray, config.mask_side, config.close_radius, config.mask_averaged)
    if config.mirror_missing_lung:
        masks = with_missing_lung(masks)
    crop = crop_lung_field(gray, masks, config.crop_side)
    if config.harmonise is None or config.harmonise_at != "crop":
        return crop
    common = config.harmonise
    air, tissue = tissue_levels(gray, masks, averaged=common.levels_averaged)
    threshold = crop.threshold  # the tissue threshold follows the re-window
    if tissue - air >= MIN_SPAN:
        moved = rewindow(np.array([threshold], np.float32), air, tissue, common.air, common.tissue)
        threshold = float(moved[0])
    threshold = min(threshold, common.ceiling)
    seen = to_common(crop.gray, (air, tissue), common, content_seed(gray))
    return replace(crop, gray=seen, threshold=threshold)


def _dense_components(crop: LungCrop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dense mask, labels, component sizes as shares of the lung field)."""
    dense = crop.filled & ~crop.air & (crop.gray > crop.threshold)
    labels, _ = ndimage.label(dense, structure=EIGHT_NEIGHBOURS)
    area = max(float(crop.filled.sum()), 1.0)
    return dense, labels, np.bincount(labels.ravel())[1:] / area


@dataclass(frozen=True)
class LesionPoint:
    """A reviewer's lesion mark in the pixels of the slice it is given with: centre (column
    x, row y) and extent (radius; None when only the centre was marked)."""

    x: float
    y: float
    radius: float | None = None

    def scaled(self, before: tuple[int, ...], after: tuple[int, ...]) -> LesionPoint:
        """The same place on the slice resized from shape `before` to `after`."""
        sy, sx = after[0] / before[0], after[1] / before[1]
        radius = None if self.radius is None else self.radius * (sx + sy) / 2
        return LesionPoint(self.x * sx, self.y * sy, radius)

    def reach(self, shape: tuple[int, ...]) -> float:
        """How far from the centre a candidate may lie and be the marked one (px)."""
        return self.radius if self.radius is not None else MARK_REACH * max(shape)


def _mark_distances(
    point: LesionPoint, labels: np.ndarray, count: int, box: tuple[float, float, float, float]
) -> np.ndarray:
    """From `point`'s centre to each of the `count` components `labels` numbers (1, 2, ...) in
    a crop cut from `box` (top, bottom, left, right) of the slice `point` is given on, in that
    slice's pixels: 0 when the centre lies on one of the component's pixels, else to the
    nearest of them (its square, not its centre, so the crop's scale does not add to it)."""
    top, bottom, left, right = box
    per_row, per_col = (bottom - top) / labels.shape[0], (right - left) / labels.shape[1]
    row = (point.y + 0.5 - top) / per_row - 0.5
    col = (point.x + 0.5 - left) / per_col - 0.5
    rows, cols = np.nonzero(labels)
    across = np.clip(np.abs(rows - row) - 0.5, 0.0, None) * per_row
    along = np.clip(np.abs(cols - col) - 0.5, 0.0, None) * per_col
    distances = np.full(count, np.inf)
    np.minimum.at(distances, labels[rows, cols] - 1, np.hypot(across, along))
    return distances


def candidate_at_mark(
    distances: Sequence[float], point: LesionPoint, shape: tuple[int, ...]
) -> int | None:
    """The candidate at a reviewer's lesion mark, for training (`marked_candidate`) and the
    study page (`lung_model.review.explain.read_mark`) alike: the position in `distances`
    (the candidates' `Candidate.distance`s, largest first) of the one nearest to the marked
    centre, the larger of equals, when it lies within the mark's reach on the slice of
    `shape`; None when none does."""
    if len(distances) == 0:
        return None
    nearest = int(np.argmin(distances))
    return nearest if distances[nearest] <= point.reach(shape) else None


def _counted(shares: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The components nod_ counts as candidates (indices into `shares`), largest first."""
    order = np.argsort(-shares, kind="stable")
    return order[shares[order] >= min(config.nodule_shares)]


def marked_candidate(
    crop: LungCrop, config: FeatureConfig, point: LesionPoint, shape: tuple[int, ...]
) -> int | None:
    """The index (into `_dense_components`' shares) of the candidate at `point` (in the pixels
    of the slice of `shape` the crop was cut from; `candidate_at_mark`), None when no
    candidate is (then the features keep the largest)."""
    _, labels, shares = _dense_components(crop)
    counted = _counted(shares, config)
    distances = _mark_distances(point, labels, len(shares), crop.box)[counted]
    at = candidate_at_mark(distances, point, shape)
    return None if at is None else int(counted[at])


def nodule_features(
    crop: LungCrop, config: FeatureConfig, chosen: int | None = None
) -> list[float]:
    """nod_ values; `chosen` (a `marked_candidate`) is measured as the lesion instead of the
    largest candidate."""
    dense, _, shares = _dense_components(crop)
    if len(shares) == 0:
        return [0.0] * (len(config.nodule_shares) + 3)
    counts = [float((shares >= s).sum()) for s in config.nodule_shares]
    area = max(float(crop.filled.sum()), 1.0)
    order = np.sort(shares)[::-1]
    lesion, top3 = float(order[0]), float(order[:3].sum())
    if chosen is not None:
        others = np.sort(np.delete(shares, chosen))[::-1]
        lesion = float(shares[chosen])
        top3 = lesion + float(others[:2].sum())
    return [lesion, top3, *counts, float(dense.sum() / area)]


def _order_statistics(values: np.ndarray, percentiles: list[float]) -> list[float]:
    """`np.percentile(values, percentiles, method="lower")`, by one partition."""
    last = values.size - 1
    at = [int(q / 100 * last) for q in percentiles]
    part = np.partition(values, at)
    return [float(part[i]) for i in at]


def _half(image: np.ndarray) -> np.ndarray:
    """2x2 block means (an odd last row or column is dropped)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    a = image[:h, :w]
    return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])


def log_features(crop: LungCrop, config: FeatureConfig) -> list[float]:
    out: list[float] = []
    level, inside = crop.gray, crop.filled
    sigma = config.log_sigma
    for k in range(config.log_levels):
        if k:
            level, inside = _half(level), _half(inside.astype(np.float32)) >= 0.5
        smooth = ndimage.gaussian_filter(level, sigma, mode="nearest", truncate=3.0)
        response = -(sigma**2) * ndimage.laplace(smooth)
        values = response[inside] if inside.any() else response.ravel()
        p99, p95 = _order_statistics(values, [99, 95])
        out += [float(values.max()), p99, p95, float(values.mean()), float(values.std())]
    return out


def intensity_features(crop: LungCrop, config: FeatureConfig) -> list[float]:
    values = crop.gray[crop.filled] if crop.filled.any() else crop.gray.ravel()
    percentiles = [float(q) for q in config.intensity_percentiles]
    return [*_order_statistics(values, percentiles), float(values.mean()), float(values.std())]


def _texture_mask(crop: LungCrop, config: FeatureConfig) -> np.ndarray | None:
    return crop.filled if config.texture_region == "field" and crop.filled.any() else None


def _texture_gray(crop: LungCrop, config: FeatureConfig) -> np.ndarray:
    if config.texture_ceiling >= 1.0:
        return crop.gray
    return np.minimum(crop.gray, np.float32(config.texture_ceiling))


def glcm_group(crop: LungCrop, config: FeatureConfig) -> list[float]:
    mask = _texture_mask(crop, config)
    gray = _texture_gray(crop, config)
    return glcm_features(gray, config.glcm_levels, config.glcm_distances, mask)


def lbp_group(crop: LungCrop, config: FeatureConfig) -> list[float]:
    return lbp_histogram(_texture_gray(crop, config), _texture_mask(crop, config))


FEATURE_GROUPS: dict[str, Callable[[LungCrop, FeatureConfig], list[float]]] = {
    "nod": nodule_features,
    "log": log_features,
    "int": intensity_features,
    "glcm": glcm_group,
    "lbp": lbp_group,
}


@dataclass(frozen=True)
class Candidate:
    """A dense structure in the lung field, in the input gray's pixel coordinates."""

    share: float  # of the lung field's area
    box: tuple[int, int, int, int]  # top, bottom, left, right (exclusive ends)
    outline: tuple[tuple[float, float], ...]  # closed polygon of (row, column) points
    # from the centre of the mark `nodule_candidates` was given (0: on one of its pixels), px
    distance: float | None = None


def nodule_candidates(
    gray: np.ndarray, config: FeatureConfig, point: LesionPoint | None = None
) -> list[Candidate]:
    """The dense structures nod_ measures, largest first, down to the smallest share counted
    (found on the harmonised slice when the model harmonises, outlined on `gray`'s pixels);
    with a reviewer's lesion `point` (in `gray`'s pixels), each one's distance from it, which
    `candidate_at_mark` reads."""
    seen = model_gray(gray, config)
    crop = lung_crop(seen, config)
    _, labels, shares = _dense_components(crop)
    top, bottom, left, right = crop.box
    back_y, back_x = gray.shape[0] / seen.shape[0], gray.shape[1] / seen.shape[1]
    top, bottom, left, right = top * back_y, bottom * back_y, left * back_x, right * back_x
    scale_y = (bottom - top) / crop.gray.shape[0]
    scale_x = (right - left) / crop.gray.shape[1]
    height, width = gray.shape
    distances = (
        [None] * len(shares)
        if point is None
        else _mark_distances(point, labels, len(shares), (top, bottom, left, right)).tolist()
    )
    found = []
    for k in _counted(shares, config):
        one = np.pad(labels == k + 1, 1)
        contour = max(find_contours(one.astype(np.float32), 0.5), key=len) - 1
        rows = np.clip(top + (contour[:, 0] + 0.5) * scale_y - 0.5, 0, height - 1)
        cols = np.clip(left + (contour[:, 1] + 0.5) * scale_x - 0.5, 0, width - 1)
        box = (
            int(rows.min()),
            min(height, int(np.ceil(rows.max())) + 1),
            int(cols.min()),
            min(width, int(np.ceil(cols.max())) + 1),
        )
        outline = tuple((float(r), float(c)) for r, c in zip(rows, cols, strict=True))
        found.append(Candidate(float(shares[k]), box, outline, distances[k]))
    return found


def slice_features(
    gray: np.ndarray, config: FeatureConfig, point: LesionPoint | None = None
) -> np.ndarray:
    """(n,) float32 features of a (H, W) gray slice in [0, 1], in `feature_names` order;
    with a reviewer's lesion `point` (in `gray`'s pixels, training only), the nod_ lesion
    features measure the candidate at the mark (`marked_candidate`)."""
    return features_and_crop(gray, config, point)[0]


def features_and_crop(
    gray: np.ndarray, config: FeatureConfig, point: LesionPoint | None = None
) -> tuple[np.ndarray, LungCrop]:
    """`slice_features` and the lung-field crop they were read from (its gray is
    `seen_crop`'s): training measures that crop's acquisition without making it again."""
    seen = model_gray(gray, config)
    crop = lung_crop(seen, config)
    groups = dict(FEATURE_GROUPS)
    if point is not None and "nod" in config.groups:
        chosen = marked_candidate(crop, config, point.scaled(gray.shape, seen.shape), seen.shape)
        groups["nod"] = lambda crop, config: nodule_features(crop, config, chosen)
    values = [
        v for name, group in groups.items() if name in config.groups for v in group(crop, config)
    ]
    return np.asarray(values, dtype=np.float32), crop
