"""Lung-field feature cost per slice (issue 12): the product's extractor against the literal
library version of the same steps, in the same run, on the same real slices.

Single thread (OMP/BLAS threads pinned to 1 before numpy loads), CPU time per slice
(`time.process_time`, steadier than wall time on a shared machine), median and 90th
percentile over `--slices` slices of data/raw spread across the three classes, after a
warm-up. Steps: decode at full resolution (`read_gray`), lung masks + crop, each feature
group, and the total (decode + everything). The baseline swaps in, step by step:
- mask + crop: `ndimage.binary_closing` with the disk instead of two distance transforms
  (identical masks, tests/imaging/test_lung_field.py);
- log: `ndimage.gaussian_laplace` at sigma 1.5, 3, 6, 12 on the full crop (the literal
  recipe; the product's Gaussian + Laplace pyramid gives close, not identical, values);
- glcm: `skimage.feature.graycomatrix` + `graycoprops` at the same levels (what the product
  calls: same cost expected);
- lbp: `skimage.feature.local_binary_pattern(u8, 8, 1, method="uniform")` (identical codes).

usage: .venv/bin/python bench/bench_features.py [--slices 150] [--crop-side PX]
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from skimage.feature import local_binary_pattern  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from lung_model.imaging import lung_field  # noqa: E402
from lung_model.imaging.features import (  # noqa: E402
    FEATURE_GROUPS,
    FeatureConfig,
    LungCrop,
    lung_crop,
)
from lung_model.imaging.images import read_gray  # noqa: E402
from lung_model.imaging.texture import LBP_BINS  # noqa: E402

STEPS = ("decode", "mask + crop", *FEATURE_GROUPS, "total")
Group = Callable[[LungCrop, FeatureConfig], list[float]]


def disk_closing(mask: np.ndarray, radius: float) -> np.ndarray:
    reach = int(radius)
    y, x = np.ogrid[-reach : reach + 1, -reach : reach + 1]
    return ndimage.binary_closing(mask, structure=x * x + y * y <= radius * radius)


def literal_log(crop: LungCrop, config: FeatureConfig) -> list[float]:
    out: list[float] = []
    for k in range(config.log_levels):
        sigma = config.log_sigma * 2**k
        values = (-(sigma**2) * ndimage.gaussian_laplace(crop.gray, sigma))[crop.filled]
        p95, p99 = np.percentile(values, [95, 99])
        out += [values.max(), p99, p95, values.mean(), values.std()]
    return out


def skimage_lbp(crop: LungCrop, config: FeatureConfig) -> list[float]:
    u8 = (crop.gray * 255).astype(np.uint8)
    codes = local_binary_pattern(u8, 8, 1, method="uniform").astype(np.intp)
    counts = np.bincount(codes.ravel(), minlength=LBP_BINS)
    return list(counts / counts.sum())


BASELINE: dict[str, Group] = {**FEATURE_GROUPS, "log": literal_log, "lbp": skimage_lbp}


def real_slices(count: int) -> list[Path]:
    files = sorted((PROJECT / "data" / "raw").glob("*/*.jpg"))
    if not files:
        sys.exit("no slices in data/raw: run `dvc pull` (or `make data`) first")
    return files[:: max(1, len(files) // count)][:count]


def time_slice(path: Path, config: FeatureConfig, groups: dict[str, Group]) -> dict[str, float]:
    clock = time.process_time
    start = clock()
    gray = read_gray(path).gray
    seconds = {"decode": clock() - start}
    mark = clock()
    crop = lung_crop(gray, config)
    seconds["mask + crop"] = clock() - mark
    for name, group in groups.items():
        mark = clock()
        group(crop, config)
        seconds[name] = clock() - mark
    seconds["total"] = clock() - start
    return seconds


def time_both(path: Path, config: FeatureConfig) -> tuple[dict[str, float], dict[str, float]]:
    """The product's and the baseline's costs on one slice, one right after the other."""
    ours = time_slice(path, config, FEATURE_GROUPS)
    product_closing = lung_field.close_disk
    lung_field.close_disk = disk_closing  # the module looks `close_disk` up at call time
    try:
        return ours, time_slice(path, config, BASELINE)
    finally:
        lung_field.close_disk = product_closing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--crop-side", type=int, default=FeatureConfig().crop_side)
    args = parser.parse_args()
    paths, config = real_slices(args.slices), FeatureConfig(crop_side=args.crop_side)
    for path in paths[:5]:  # warm-up
        time_both(path, config)
    rows = [time_both(path, config) for path in paths]
    product = {step: 1e3 * np.array([ours[step] for ours, _ in rows]) for step in STEPS}
    literal = {step: 1e3 * np.array([theirs[step] for _, theirs in rows]) for step in STEPS}
    print(
        f"\n{len(paths)} slices of data/raw, {config.crop_side} px crop, 1 thread, CPU ms a slice\n"
    )
    print("| step | product median | product p90 | library median | library p90 | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for step in STEPS:
        ours, theirs = np.median(product[step]), np.median(literal[step])
        print(
            f"| {step} | {ours:.2f} | {np.percentile(product[step], 90):.2f} "
            f"| {theirs:.2f} | {np.percentile(literal[step], 90):.2f} | {theirs / ours:.1f}x |"
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
