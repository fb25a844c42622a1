"""Texture statistics of a lung-field crop: grey-level co-occurrence (GLCM) and local binary
patterns (LBP), over the whole crop or only inside a mask (the lung field: a narrower export
window saturates bright tissue outside it, issue 19).

`glcm_features` is scikit-image's `graycomatrix` (symmetric, normalised; angles 0, 45, 90,
135 degrees averaged) and `graycoprops`' contrast, homogeneity, energy, correlation and
entropy (natural log) per distance (its arithmetic, the matrices normalised once:
`glcm_properties`; tests/imaging/test_texture.py checks the numbers are identical). `lbp_histogram` is the 10-bin histogram of the
"uniform" LBP with P=8 neighbours on a circle of radius 1 (bilinear interpolation): the
codes of `skimage.feature.local_binary_pattern(u8, 8, 1, method="uniform")`, computed with
eight shifted numpy arrays in a quarter of the time (tests/imaging/test_features.py checks
they are identical). On this data both mostly measure pixel noise, which is why the crop is cut
from the full-resolution decode. With a mask, the GLCM counts only pairs of pixels both inside
it (the pixels outside get an extra level 0 whose row and column are dropped before
`graycoprops`, which normalises) and the LBP histogram only the codes of pixels inside it.

APIs: https://scikit-image.org/docs/stable/api/skimage.feature.html#skimage.feature.graycomatrix,
https://scikit-image.org/docs/stable/api/skimage.feature.html#skimage.feature.graycoprops,
https://scikit-image.org/docs/stable/api/skimage.feature.html#skimage.feature.local_binary_pattern
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.feature import graycomatrix

GLCM_PROPERTIES = ("contrast", "homogeneity", "energy", "correlation", "entropy")
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
LBP_POINTS = 8  # on a circle of radius 1
LBP_BINS = LBP_POINTS + 2  # uniform codes by their number of ones, then "not uniform"


def quantised(gray: np.ndarray, levels: int) -> np.ndarray:
    """Gray in [0, 1] to integer levels 0..levels-1 (uint8, so levels <= 256)."""
    return np.minimum((gray * levels).astype(np.int32), levels - 1).astype(np.uint8)


def glcm_features(
    gray: np.ndarray, levels: int, distances: Sequence[int], mask: np.ndarray | None = None
) -> list[float]:
    """GLCM_PROPERTIES at each distance, averaged over GLCM_ANGLES: property-major order;
    with `mask`, of the pairs of pixels both inside it."""
    if mask is None:
        matrices = graycomatrix(
            quantised(gray, levels), distances, GLCM_ANGLES, levels, symmetric=True, normed=True
        )
    else:
        shifted = quantised(gray, levels) + np.uint8(1)  # levels <= 255 here
        shifted[~mask] = 0
        counts = graycomatrix(shifted, distances, GLCM_ANGLES, levels + 1, symmetric=True)
        matrices = counts[1:, 1:]
    properties = glcm_properties(matrices)
    return [float(v) for p in GLCM_PROPERTIES for v in properties[p].mean(axis=1)]


def glcm_properties(counts: np.ndarray) -> dict[str, np.ndarray]:
    """`graycoprops(counts, p)` for each of GLCM_PROPERTIES, with its arithmetic (the same
    numbers), normalising the matrices once instead of once per property."""
    levels = counts.shape[0]
    matrices = counts.astype(np.float64)
    sums = np.sum(matrices, axis=(0, 1), keepdims=True)
    sums[sums == 0] = 1
    matrices /= sums
    i, j = np.ogrid[0:levels, 0:levels]
    squared = ((i - j) ** 2).reshape((levels, levels, 1, 1))
    homogeneity = (1.0 / (1.0 + (i - j) ** 2)).reshape((levels, levels, 1, 1))
    logs = -np.log(matrices, where=(matrices != 0), out=np.zeros_like(matrices))
    return {
        "contrast": np.sum(matrices * squared, axis=(0, 1)),
        "homogeneity": np.sum(matrices * homogeneity, axis=(0, 1)),
        "energy": np.sqrt(np.sum(matrices**2, axis=(0, 1))),
        "correlation": _correlation(matrices),
        "entropy": np.sum(matrices * logs, axis=(0, 1)),
    }


def _correlation(matrices: np.ndarray) -> np.ndarray:
    """graycoprops' "correlation" of normalised matrices (1 where a level is constant)."""
    levels, _, distances, angles = matrices.shape
    results = np.zeros((distances, angles), dtype=np.float64)
    i = np.array(range(levels)).reshape((levels, 1, 1, 1))
    j = np.array(range(levels)).reshape((1, levels, 1, 1))
    diff_i = i - np.sum(i * matrices, axis=(0, 1))
    diff_j = j - np.sum(j * matrices, axis=(0, 1))
    std_i = np.sqrt(np.sum(matrices * (diff_i) ** 2, axis=(0, 1)))
    std_j = np.sqrt(np.sum(matrices * (diff_j) ** 2, axis=(0, 1)))
    cov = np.sum(matrices * (diff_i * diff_j), axis=(0, 1))
    constant = std_i < 1e-15
    constant[std_j < 1e-15] = True
    results[constant] = 1
    varies = ~constant
    results[varies] = cov[varies] / (std_i[varies] * std_j[varies])
    return results


def _uniform_bins() -> np.ndarray:
    """8-bit code -> "uniform" bin: its number of ones if at most 2 circular 0/1
    transitions, else LBP_POINTS + 1 (skimage's method="uniform" for P=8)."""
    table = np.zeros(256, dtype=np.intp)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(LBP_POINTS)]
        transitions = sum(bits[k] != bits[(k + 1) % LBP_POINTS] for k in range(LBP_POINTS))
        table[code] = sum(bits) if transitions <= 2 else LBP_POINTS + 1
    return table


UNIFORM_BINS = _uniform_bins()


def lbp_codes(image: np.ndarray) -> np.ndarray:
    """`skimage.feature.local_binary_pattern(image, 8, 1)` (method "default"), vectorised:
    neighbour k at (r, c) + (-sin, cos)(2πk/8) rounded to 5 decimals, interpolated as
    skimage's bilinear_interpolation (same fractions, same order of operations, zero
    outside the image); bit k set when neighbour - centre >= 0."""
    x = image.astype(np.float64)
    height, width = x.shape
    padded, padded_as_is = np.pad(x, 2), np.pad(image, 2)
    code = np.zeros((height, width), dtype=np.uint8)
    top, bottom, part = (np.empty((height, width)) for _ in range(3))
    bit = np.empty((height, width), dtype=bool)

    def shifted(dy: int, dx: int, source: np.ndarray = padded) -> np.ndarray:
        return source[2 + dy : 2 + dy + height, 2 + dx : 2 + dx + width]

    for k in range(LBP_POINTS):
        angle = 2 * np.pi * k / LBP_POINTS
        rows = np.arange(height, dtype=np.float64)[:, None] + round(-np.sin(angle), 5)
        cols = np.arange(width, dtype=np.float64)[None, :] + round(np.cos(angle), 5)
        fy, fx = rows - np.floor(rows), cols - np.floor(cols)
        y0, x0 = int(np.floor(rows[0, 0])), int(np.floor(cols[0, 0]))
        if not fy.any() and not fx.any():  # on the axes: the pixel itself, compared in the
            # image's own type (as exact as its float64 copy, an eighth of the bytes for uint8)
            neighbour, x_as = shifted(y0, x0, padded_as_is), image
        else:  # (1 - fy) * top + fy * bottom, in buffers
            np.multiply(1 - fx, shifted(y0, x0), out=top)
            top += np.multiply(fx, shifted(y0, x0 + 1), out=part)
            np.multiply(1 - fx, shifted(y0 + 1, x0), out=bottom)
            bottom += np.multiply(fx, shifted(y0 + 1, x0 + 1), out=part)
            top *= 1 - fy
            top += np.multiply(fy, bottom, out=bottom)
            neighbour, x_as = top, x
        code |= np.greater_equal(neighbour, x_as, out=bit).view(np.uint8) << k  # neighbour >= x
    return code


def lbp_histogram(gray: np.ndarray, mask: np.ndarray | None = None) -> list[float]:
    """Share of the crop's pixels (inside `mask` when given) in each of the LBP_BINS uniform
    bins (gray in [0, 1])."""
    codes = lbp_codes((gray * 255).astype(np.uint8))
    codes = codes.ravel() if mask is None else codes[mask]
    # each code counted, then the counts summed per bin: whole numbers, so the same as
    # counting each pixel's bin, without a lookup per pixel
    counts = np.bincount(UNIFORM_BINS, np.bincount(codes, minlength=256), minlength=LBP_BINS)
    return [float(v) for v in counts / max(counts.sum(), 1.0)]
