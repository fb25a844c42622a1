"""Small synthetic CT series for the exchange tests: the fixture's JPEG slices as DICOM CT
instances (`lung_model.exchange.synthetic`), a new study each call."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.exchange import documents, synthetic
from lung_model.exchange.synthetic import Series
from lung_model.settings import PROJECT_ROOT

FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"
__all__ = ["Series", "ct_instance", "fixture_slices", "write_series"]


def fixture_slices(count: int) -> list[Path]:
    """`count` fixture JPEGs, the malignant ones first, repeated as needed."""
    found = sorted((FIXTURE / "Malignant cases").glob("*.jpg"))
    found += sorted((FIXTURE / "Normal cases").glob("*.jpg"))
    found += sorted((FIXTURE / "Bengin cases").glob("*.jpg"))
    return [found[i % len(found)] for i in range(count)]


def write_series(folder: Path, count: int, *, size: int = 128) -> Series:
    """A new CT study of `count` slices (`size` px) as files in `folder`."""
    return synthetic.write_series(folder, fixture_slices(count), uuid.uuid4().hex, size)


def ct_instance(
    gray: np.ndarray, study_uid: str, series_uid: str, number: int, *, modality: str = "CT"
) -> Any:
    """One instance of a new SOP Instance UID in the given study and series."""
    uid = documents.derived_uid(uuid.uuid4().hex)
    return synthetic.ct_instance(gray, study_uid, series_uid, number, uid, modality=modality)
