"""The group split on the real dataset: no group or duplicate crosses it, and it is fixed."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lung_model.data.audit import Inventory, inspect
from lung_model.data.split import (
    PARTS,
    LeakageError,
    Split,
    check,
    make_split,
    random_image_split,
    report,
)
from lung_model.settings import CLASSES, get_settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"


@pytest.fixture(scope="module")
def real() -> Inventory:
    data = get_settings().raw_data
    if not (data / "MANIFEST.csv").exists():
        pytest.fail("data/raw is missing: run `make data` first")
    return inspect(data)


@pytest.fixture(scope="module")
def split(real: Inventory) -> Split:
    return make_split(real)


def test_covers_the_manifest(real: Inventory, split: Split) -> None:
    manifest = {
        row["path"]: row["label"] for row in csv.DictReader((real.data_dir / "MANIFEST.csv").open())
    }
    assert split.label == manifest
    assert set(split.part.values()) == set(PARTS)


def test_no_group_and_no_duplicate_crosses(split: Split) -> None:
    check(split)  # raises on a leak
    parts_of: dict[str, set[str]] = defaultdict(set)
    for path, sha in split.sha256.items():
        parts_of[sha].add(split.part[path])
    assert all(len(parts) == 1 for parts in parts_of.values())
    assert len(set(split.sha256.values())) < len(split.sha256)  # the data does have duplicates


def test_consecutive_look_alike_slices_share_a_group(split: Split) -> None:
    assert (
        split.group["Normal cases/Normal case (1).jpg"]
        == split.group["Normal cases/Normal case (2).jpg"]
    )
    n_groups = len(set(split.group.values()))
    assert 40 <= n_groups <= 300  # pseudo-patients, neither one blob nor single slices
    assert max(Counter(split.group.values()).values()) < 100


def test_every_part_has_every_class_in_proportion(split: Split) -> None:
    summary = report(split)
    for part in PARTS:
        for cls in CLASSES:
            assert summary["groups"][part][cls] >= 2, (part, cls)
    total = len(split.part)
    assert 0.5 < len(split.paths("train")) / total < 0.7
    assert 0.12 < len(split.paths("test")) / total < 0.28


def test_split_is_fixed_for_a_data_version(real: Inventory, split: Split) -> None:
    again = make_split(real)
    assert again.part == split.part
    assert Split.from_json(split.to_json()) == split
    assert split.data_version.endswith(".dir")


def test_a_random_image_split_leaks(real: Inventory) -> None:
    with pytest.raises(LeakageError):
        check(random_image_split(real))


def test_check_catches_a_moved_slice(split: Split) -> None:
    path = split.paths("test")[0]
    sibling = next(p for p, g in split.group.items() if g == split.group[path] and p != path)
    leaky = dataclasses.replace(split, part={**split.part, sibling: "train"})
    with pytest.raises(LeakageError, match="group"):
        check(leaky)


def test_tiny_fixture_split_still_covers_each_part() -> None:
    tiny = make_split(inspect(FIXTURES))
    for part in PARTS:
        assert sorted(tiny.label[p] for p in tiny.paths(part)) == sorted(CLASSES * 2)
