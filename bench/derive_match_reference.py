"""The reference `HarmoniseConfig.match` maps every slice's body onto (docs/MODEL.md, run 12):
the median, over this release's training-split normal and benign slices (its typical export;
never the test split), of each slice's body quantiles at `rows` rows, as harmonise measures
them. Prints the tuple `lung_model.imaging.acquisition.MATCH_REFERENCE` ships.

Run: .venv/bin/python bench/derive_match_reference.py [--count 33] [--data data/raw]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lung_model.data.audit import inspect
from lung_model.data.split import make_split
from lung_model.imaging.acquisition import (
    HarmoniseConfig,
    body_quantiles,
    compartment_quantiles,
    resize_rows,
)
from lung_model.imaging.images import read_gray
from lung_model.imaging.lung_field import lung_masks
from lung_model.settings import get_settings


def measured(path: Path, rows: int, args: argparse.Namespace) -> np.ndarray | None:
    gray = resize_rows(read_gray(path).gray, rows)
    if args.compartments:
        return compartment_quantiles(gray, args.count, lung_masks(gray))
    return body_quantiles(gray, args.count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=33)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument(
        "--compartments",
        action="store_true",
        help="the aerated lung's "
        "quantiles, then the soft tissue's (HarmoniseConfig.match_compartments)",
    )
    args = parser.parse_args()
    data = args.data or get_settings().raw_data
    split = make_split(inspect(data))
    paths = [p for p in split.paths("train") if split.label[p] in ("normal", "benign")]
    rows = HarmoniseConfig().rows
    quantiles = np.stack(
        [q for q in (measured(data / p, rows, args) for p in paths) if q is not None]
    )
    reference = np.median(quantiles, axis=0)
    print(f"# {len(quantiles)} of {len(paths)} training-split normal and benign slices")
    print("(" + ", ".join(f"{v:.3f}" for v in reference) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
