"""Fixtures of the exchange tests: a real Orthanc on loopback, our receiver in-process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from orthanc import Orthanc, free_port, installed  # noqa: E402

from lung_model.settings import Settings  # noqa: E402

needs_orthanc = pytest.mark.skipif(
    not installed(),
    reason="Orthanc and dcmtk are not installed (apt-get install orthanc "
    "orthanc-dicomweb dcmtk; .ci/run installs them)",
)


@pytest.fixture
def dicom_settings(settings: Settings) -> Settings:
    """The test's settings with the receiver on a free loopback port, quick to go quiet."""
    settings.dicom_port = free_port()
    settings.dicom_quiet_seconds = 0.5
    settings.dicom_allowed_aets = "ORTHANC,STORESCU,LUNGTEST"
    return settings


@pytest.fixture
def orthanc(tmp_path: Path, dicom_settings: Settings) -> Iterator[Orthanc]:
    pacs = Orthanc(tmp_path / "orthanc", dicom_settings.dicom_port).start()
    try:
        yield pacs
    finally:
        pacs.stop()
