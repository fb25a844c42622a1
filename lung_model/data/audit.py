"""Audit the labelled dataset: readable files, duplicates, near-duplicates, classes, sizes.

`inspect` decodes every slice once (through `lung_model.imaging.images.read_gray`, as training and
serving do) and keeps what the audit and the group split need: sha256, size, a perceptual
hash (https://github.com/JohannesBuchner/imagehash) and a small thumbnail. `audit` turns that
into a JSON-ready report; integrity errors (unreadable files, files that do not match
MANIFEST.csv, an empty class, lesion marks in ANNOTATIONS.csv that name no image, another
class than their image's or a point outside it) are listed under `errors` and fail
`python -m lung_model audit`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lung_model.data import lesion_marks
from lung_model.data.dataset import scan
from lung_model.data.dvc import RAW_DVC_FILE, data_version, sha256_of
from lung_model.imaging.images import read_gray
from lung_model.imaging.errors import UnreadableImage
from lung_model.settings import CLASSES

THUMB = 32  # thumbnail side for slice-to-slice correlation
NEAR_DUPLICATE_BITS = 2  # perceptual hashes this close (of 64 bits) are near-duplicates
NEAR_DUPLICATE_CORRELATION = 0.97  # ... and so are thumbnails correlated this well
log = logging.getLogger(__name__)


@dataclass
class SliceInfo:
    path: str
    label: str
    number: int | None
    sha256: str
    width: int = 0
    height: int = 0
    error: str | None = None
    phash: int | None = None  # 64-bit DCT perceptual hash
    thumb: np.ndarray | None = field(default=None, repr=False)  # (THUMB, THUMB) float32


@dataclass
class Inventory:
    data_dir: Path
    slices: list[SliceInfo]
    skipped_folders: list[str]

    @property
    def readable(self) -> list[SliceInfo]:
        return [s for s in self.slices if s.error is None]

    @property
    def data_version(self) -> str:
        """The DVC hash for `data/raw` (of this project, or of another DVC repository beside
        its `raw.dvc`); elsewhere a digest of the (path, sha256) list."""
        if self.data_dir.resolve() == RAW_DVC_FILE.with_suffix("").resolve():
            return data_version()
        if self.data_dir.name == "raw" and (pointer := self.data_dir.with_suffix(".dvc")).exists():
            return data_version(pointer)
        listing = "\n".join(
            f"{s.path}\t{s.sha256}" for s in sorted(self.slices, key=lambda s: s.path)
        )
        return "local-" + hashlib.sha256(listing.encode()).hexdigest()[:16]


def _phash(gray: np.ndarray) -> int:
    import imagehash

    image = Image.fromarray(np.uint8(np.round(gray * 255)))
    return int(str(imagehash.phash(image)), 16)


def _thumb(gray: np.ndarray) -> np.ndarray:
    image = Image.fromarray(gray.astype(np.float32), mode="F").resize(
        (THUMB, THUMB), Image.Resampling.BOX
    )
    return np.asarray(image, dtype=np.float32)


def inspect(data_dir: Path, progress: bool = False) -> Inventory:
    """Decode every slice under `data_dir` once and describe it."""
    from tqdm import tqdm

    labelled, skipped = scan(data_dir)
    infos: list[SliceInfo] = []
    for item in tqdm(labelled, desc="audit", unit="slice", disable=not progress):
        info = SliceInfo(item.path, item.label, item.number, sha256_of(data_dir / item.path))
        try:
            decoded = read_gray(data_dir / item.path)
        except UnreadableImage as error:
            info.error = str(error)
        else:
            info.width, info.height = decoded.width, decoded.height
            info.phash = _phash(decoded.gray)
            info.thumb = _thumb(decoded.gray)
        infos.append(info)
    return Inventory(data_dir, infos, skipped)


def thumbnail_correlation(slices: list[SliceInfo]) -> np.ndarray:
    """Pearson correlation between the thumbnails of every two slices (NaN if unreadable)."""
    flat = np.full((len(slices), THUMB * THUMB), np.nan, dtype=np.float64)
    for i, s in enumerate(slices):
        if s.thumb is not None:
            t = s.thumb.ravel().astype(np.float64)
            flat[i] = (t - t.mean()) / (t.std() + 1e-9)
    return (flat @ flat.T) / flat.shape[1]


def near_duplicate_pairs(
    slices: list[SliceInfo], correlation: np.ndarray | None = None
) -> list[tuple[int, int, float]]:
    """(i, j, correlation) for every pair of distinct files that look alike: perceptual hashes
    within NEAR_DUPLICATE_BITS or thumbnails correlated at NEAR_DUPLICATE_CORRELATION."""
    readable = np.array([s.phash is not None for s in slices])
    if readable.sum() < 2:
        return []
    correlation = thumbnail_correlation(slices) if correlation is None else correlation
    hashes = np.array([s.phash or 0 for s in slices], dtype=np.uint64)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(len(slices), 8), axis=1)
    distance = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    alike = (distance <= NEAR_DUPLICATE_BITS) | (
        np.nan_to_num(correlation) >= NEAR_DUPLICATE_CORRELATION
    )
    alike &= readable[:, None] & readable[None, :]
    sha = np.array([s.sha256 for s in slices])
    alike &= sha[:, None] != sha[None, :]  # exact copies are reported as such
    a, b = np.nonzero(np.triu(alike, k=1))
    return [(int(i), int(j), round(float(correlation[i, j]), 4)) for i, j in zip(a, b, strict=True)]


def _manifest_problems(inventory: Inventory) -> list[str]:
    manifest = inventory.data_dir / "MANIFEST.csv"
    if not manifest.exists():
        return []
    expected = {row["path"]: row for row in csv.DictReader(manifest.open())}
    found = {s.path: s for s in inventory.slices}
    problems = [f"in MANIFEST.csv but missing: {p}" for p in sorted(set(expected) - set(found))]
    problems += [f"not in MANIFEST.csv: {p}" for p in sorted(set(found) - set(expected))]
    for path in sorted(set(expected) & set(found)):
        if expected[path]["sha256"] != found[path].sha256:
            problems.append(f"sha256 differs from MANIFEST.csv: {path}")
        if expected[path].get("label") not in (None, "", found[path].label):
            problems.append(f"label differs from MANIFEST.csv: {path}")
    return problems


def audit(inventory: Inventory) -> dict[str, Any]:
    """The audit report (JSON-ready); `errors` non-empty means the data must not be used."""
    slices = inventory.slices
    errors: list[str] = []
    warnings: list[str] = []
    unreadable = [{"path": s.path, "reason": s.error} for s in slices if s.error]
    errors += [f"unreadable: {u['path']} ({u['reason']})" for u in unreadable]
    errors += _manifest_problems(inventory)
    marks, unparsed = lesion_marks.read(inventory.data_dir)
    errors += unparsed + lesion_marks.problems(
        marks, {s.path: s.label for s in slices}, {s.path: (s.width, s.height) for s in slices}
    )
    counts = Counter(s.label for s in slices)
    errors += [f"class '{c}' has no images" for c in CLASSES if counts[c] == 0]
    warnings += [f"skipped folder (no class): {name}" for name in inventory.skipped_folders]

    by_hash: dict[str, list[SliceInfo]] = defaultdict(list)
    for s in slices:
        by_hash[s.sha256].append(s)
    duplicates = [group for group in by_hash.values() if len(group) > 1]
    for group in duplicates:
        if len({s.label for s in group}) > 1:
            warnings.append(
                "identical file under different labels: " + ", ".join(s.path for s in group)
            )

    near = near_duplicate_pairs(slices)
    near_cross = [(i, j, d) for i, j, d in near if slices[i].label != slices[j].label]
    sizes: dict[str, Counter[str]] = defaultdict(Counter)
    for s in inventory.readable:
        sizes[f"{s.width}x{s.height}"][s.label] += 1
    shortcut = [size for size, c in sizes.items() if len(c) == 1 and sum(c.values()) > 1]
    if len(sizes) > 1:
        warnings.append(
            f"{len(sizes)} image sizes; sizes seen in one class only: {', '.join(sorted(shortcut))}"
            " (preprocessing pads to a square so size cannot betray the class)"
        )
    return {
        "data_dir": str(inventory.data_dir),
        "data_version": inventory.data_version,
        "n_files": len(slices),
        "n_readable": len(inventory.readable),
        "class_counts": {c: counts[c] for c in CLASSES},
        "lesion_marks": dict(Counter(mark.kind for mark in marks)),
        "image_sizes": {size: dict(c) for size, c in sorted(sizes.items())},
        "unreadable": unreadable,
        "exact_duplicates": [[s.path for s in group] for group in duplicates],
        "near_duplicate_rule": f"phash distance <= {NEAR_DUPLICATE_BITS} bits or "
        f"{THUMB}x{THUMB} thumbnail correlation >= {NEAR_DUPLICATE_CORRELATION}",
        "near_duplicate_pairs": [[slices[i].path, slices[j].path, d] for i, j, d in near],
        "near_duplicates_across_classes": len(near_cross),
        "errors": errors,
        "warnings": warnings,
    }


class DataIntegrityError(RuntimeError):
    """The audit found errors: the data must not be trained on."""


def require_clean(report: dict[str, Any]) -> dict[str, Any]:
    """The audit report, or DataIntegrityError naming its first errors."""
    if report["errors"]:
        raise DataIntegrityError(
            f"{len(report['errors'])} errors: " + "; ".join(report["errors"][:5])
        )
    return report


def summary(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    lines = [
        f"data {report['data_dir']} (version {report['data_version']})",
        f"files {report['n_files']}, readable {report['n_readable']}, unreadable {len(report['unreadable'])}",
        "classes " + ", ".join(f"{c} {n}" for c, n in report["class_counts"].items()),
        "sizes " + "; ".join(f"{size}: {dict(c)}" for size, c in report["image_sizes"].items()),
        f"exact duplicate sets {len(report['exact_duplicates'])}, near-duplicate pairs "
        f"{len(report['near_duplicate_pairs'])} ({report['near_duplicates_across_classes']} across classes)",
    ]
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += [f"ERROR: {e}" for e in report["errors"]]
    lines.append("audit " + ("FAILED" if report["errors"] else "passed"))
    return "\n".join(lines)
