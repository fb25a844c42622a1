"""Train / validation / test by pseudo-patient group, stratified by class, checked for leaks.

Within each class (a group's majority label) groups are dealt so that each part gets close to
its share of both slices and groups (the best of a few hundred orders drawn from a fixed seed). The result depends only
on the data, so one data version always has the same test split and two models are compared
on the same cases. `check` asserts that no group and no file content crosses a split.
`random_image_split` exists only to show, next to the honest figures, what leakage reports.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lung_model.data.audit import Inventory, inspect
from lung_model.data.grouping import group_labels, pseudo_patients
from lung_model.settings import CLASSES, get_settings

PARTS = ("train", "val", "test")
FRACTIONS = (0.6, 0.2, 0.2)
SPLIT_SEED = 20240531


class LeakageError(AssertionError):
    """A group or a duplicate file appears in more than one part of the split."""


@dataclass
class Split:
    data_version: str
    method: str  # "group" or "random-image"
    part: dict[str, str]  # path -> train / val / test
    group: dict[str, str]  # path -> pseudo-patient group
    label: dict[str, str]  # path -> class
    sha256: dict[str, str]  # path -> file content hash

    def paths(self, part: str) -> list[str]:
        return sorted(p for p, where in self.part.items() if where == part)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Split:
        return cls(**json.loads(text))


def _deal(groups: list[tuple[str, int]], seed: int, tries: int = 400) -> dict[str, str]:
    """Assign (group, size) pairs to parts so that both the slices and the groups of each part
    come close to its fraction: the best of `tries` seeded orders, each dealt greedily."""
    total_slices, total_groups = sum(size for _, size in groups), len(groups)
    rng = random.Random(seed)
    best: tuple[float, dict[str, str]] = (float("inf"), {})
    for _ in range(tries):
        order = sorted(groups)
        rng.shuffle(order)
        slices, count = dict.fromkeys(PARTS, 0), dict.fromkeys(PARTS, 0)
        where: dict[str, str] = {}
        for index, (name, size) in enumerate(order):
            empty = [p for p in PARTS if count[p] == 0]
            # keep enough groups back that every part sees every class, if there are enough
            pool = (
                empty if total_groups >= len(PARTS) and len(empty) >= len(order) - index else PARTS
            )
            part = max(pool, key=lambda p: FRACTIONS[PARTS.index(p)] - slices[p] / total_slices)
            where[name] = part
            slices[part] += size
            count[part] += 1
        cost = sum(
            abs(slices[p] / total_slices - f) + abs(count[p] / total_groups - f)
            for p, f in zip(PARTS, FRACTIONS, strict=True)
        )
        if cost < best[0]:
            best = (cost, where)
    return best[1]


def make_split(inventory: Inventory, seed: int = SPLIT_SEED) -> Split:
    """The group-aware split of the readable slices of `inventory`."""
    readable = inventory.readable
    labels = {s.path: s.label for s in readable}
    groups = pseudo_patients(inventory)
    majority = group_labels(groups, labels)
    sizes = Counter(groups.values())
    part_of_group: dict[str, str] = {}
    for index, cls in enumerate(CLASSES):
        members = [(g, sizes[g]) for g in sorted(sizes) if majority[g] == cls]
        part_of_group.update(_deal(members, seed + index))
    split = Split(
        data_version=inventory.data_version,
        method="group",
        part={p: part_of_group[g] for p, g in groups.items()},
        group=groups,
        label=labels,
        sha256={s.path: s.sha256 for s in readable},
    )
    check(split)
    return split


def random_image_split(inventory: Inventory, seed: int = SPLIT_SEED) -> Split:
    """A per-image stratified random split (the leaky kind; for contrast only)."""
    readable = inventory.readable
    rng = random.Random(seed)
    part: dict[str, str] = {}
    for cls in CLASSES:
        paths = sorted(s.path for s in readable if s.label == cls)
        rng.shuffle(paths)
        cut1, cut2 = round(len(paths) * FRACTIONS[0]), round(len(paths) * sum(FRACTIONS[:2]))
        part.update({p: "train" for p in paths[:cut1]})
        part.update({p: "val" for p in paths[cut1:cut2]})
        part.update({p: "test" for p in paths[cut2:]})
    groups = pseudo_patients(inventory)
    return Split(
        inventory.data_version,
        "random-image",
        part,
        groups,
        {s.path: s.label for s in readable},
        {s.path: s.sha256 for s in readable},
    )


def check(split: Split) -> None:
    """Raise LeakageError when a group or a file's content lies in two parts."""
    for key, name in ((split.group, "group"), (split.sha256, "duplicate file")):
        parts: dict[str, set[str]] = defaultdict(set)
        for path, value in key.items():
            parts[value].add(split.part[path])
        crossing = sorted(v for v, seen in parts.items() if len(seen) > 1)
        if crossing:
            raise LeakageError(f"{len(crossing)} {name}(s) cross the split, e.g. {crossing[0]}")


def report(split: Split) -> dict[str, Any]:
    """Counts of slices and groups per part and class, for people and MLflow."""
    slices: dict[str, Counter[str]] = defaultdict(Counter)
    groups: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path, part in split.part.items():
        slices[part][split.label[path]] += 1
        groups[part][split.label[path]].add(split.group[path])
    return {
        "data_version": split.data_version,
        "method": split.method,
        "n_groups": len(set(split.group.values())),
        "slices": {p: {c: slices[p][c] for c in CLASSES} for p in PARTS},
        "groups": {p: {c: len(groups[p][c]) for c in CLASSES} for p in PARTS},
        "test_paths": split.paths("test"),
    }
