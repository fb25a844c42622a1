"""Plain helpers the scoring tests import: real slices, study folders, row queries."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from sqlalchemy import Engine, text

from lung_model.settings import PROJECT_ROOT

RAW = PROJECT_ROOT / "data" / "raw"


def real_slices(count: int, start: int = 0) -> list[Path]:
    """`count` real slices of distinct content (the dataset holds exact duplicates)."""
    seen: set[str] = set()
    chosen: list[Path] = []
    with (RAW / "MANIFEST.csv").open() as handle:
        for row in list(csv.DictReader(handle))[start:]:
            if row["sha256"] not in seen:
                seen.add(row["sha256"])
                chosen.append(RAW / row["path"])
            if len(chosen) == count:
                return chosen
    raise RuntimeError("not enough slices in data/raw (run `make data`)")


def make_study(parent: Path, name: str, slices: list[Path], ready: str | None = "_READY") -> Path:
    """A study folder of copied slices (half of them in a series sub-folder)."""
    folder = parent / name
    for index, source in enumerate(slices):
        target = folder / ("series1" if index % 2 else "") / f"slice_{index:03d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    folder.mkdir(parents=True, exist_ok=True)
    if ready:
        (folder / ready).touch()
    return folder


def rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]
