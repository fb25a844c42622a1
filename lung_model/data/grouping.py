"""Pseudo-patients: clusters of slices that probably come from one scan.

The data has no patient id. Two slices share a group when they are the same file (sha256),
near-duplicates (`lung_model.data.audit.near_duplicate_pairs`), or consecutive numbers in one
class folder whose thumbnails still correlate (neighbouring slices of one scan), or slices of
one reviewed study (`<Class> cases/reviewed/<batch>-<study>/`, one patient). Groups are
the connected components of those links (scipy.sparse.csgraph.connected_components), so a
chain of neighbours is one group even when its ends look different. Splitting by group keeps
near-identical slices on one side.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lung_model.data.audit import Inventory, near_duplicate_pairs, thumbnail_correlation
from lung_model.settings import CLASSES

CONSECUTIVE_CORRELATION = 0.80  # neighbours below this are taken as a new scan


def pseudo_patients(inventory: Inventory) -> dict[str, str]:
    """Group id ('G001', ...) of every readable slice, keyed by path."""
    slices = inventory.slices
    correlation = thumbnail_correlation(slices)
    links: list[tuple[int, int]] = [(i, j) for i, j, _ in near_duplicate_pairs(slices, correlation)]
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(slices):
        by_sha[s.sha256].append(i)
    links += [(same[0], other) for same in by_sha.values() for other in same[1:]]
    numbered = sorted(
        (i for i, s in enumerate(slices) if s.number is not None and s.error is None),
        key=lambda i: (slices[i].label, slices[i].path.rsplit("/", 1)[0], slices[i].number),
    )
    studies: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(slices):
        if "/reviewed/" in s.path:
            studies[s.path.rsplit("/", 1)[0]].append(i)
    links += [(same[0], other) for same in studies.values() for other in same[1:]]
    for i, j in zip(numbered, numbered[1:], strict=False):
        a, b = slices[i], slices[j]
        same_folder = a.path.rsplit("/", 1)[0] == b.path.rsplit("/", 1)[0]
        neighbours = same_folder and b.number == (a.number or 0) + 1
        if neighbours and correlation[i, j] >= CONSECUTIVE_CORRELATION:
            links.append((i, j))
    n = len(slices)
    rows = np.array([i for i, _ in links] or [0], dtype=np.int64)
    cols = np.array([j for _, j in links] or [0], dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    names: dict[int, str] = {}
    groups: dict[str, str] = {}
    for i, s in enumerate(slices):  # slices are sorted by class and number: stable names
        if s.error is not None:
            continue
        names.setdefault(int(component[i]), f"G{len(names) + 1:03d}")
        groups[s.path] = names[int(component[i])]
    return groups


def group_labels(groups: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
    """Each group's majority label (ties: the more severe class) for stratification."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for path, group in groups.items():
        votes[group][labels[path]] += 1
    return {
        group: max(count, key=lambda c: (count[c], CLASSES.index(c)))
        for group, count in votes.items()
    }
