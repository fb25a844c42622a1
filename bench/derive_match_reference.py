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
from lung_model.imaging.acquisition import HarmoniseConfig, body_quantiles, resize_rows
from lung_model.imaging.images import read_gray
from lung_model.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=33)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    data = args.data or get_settings().raw_data
    split = make_split(inspect(data))
    paths = [p for p in split.paths("train") if split.label[p] in ("normal", "benign")]
    rows = HarmoniseConfig().rows
    quantiles = np.stack(
        [body_quantiles(resize_rows(read_gray(data / p).gray, rows), args.count) for p in paths]
    )
    reference = np.median(quantiles, axis=0)
    print(f"# {len(paths)} training-split normal and benign slices")
    print("(" + ", ".join(f"{v:.3f}" for v in reference) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
