"""Fixtures of the exchange tests: a real Orthanc on loopback, our receiver in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc_pacs import Orthanc

from lung_model.exchange.receiver import Service
from lung_model.platform.services import free_port
from lung_model.settings import Settings


@pytest.fixture
def dicom_settings(settings: Settings) -> Settings:
    """The test's settings with the receiver on a free loopback port, quick to go quiet."""
    settings.dicom_port = free_port()
    settings.dicom_quiet_seconds = 0.5
    settings.dicom_allowed_aets = "ORTHANC,STORESCU,LUNGTEST"
    return settings


@pytest.fixture
def orthanc(tmp_path: Path, dicom_settings: Settings) -> Iterator[Orthanc]:
    pacs = Orthanc(dicom_settings, tmp_path / "orthanc").start()
    try:
        yield pacs
    finally:
        pacs.stop()


@pytest.fixture
def receiver(dicom_settings: Settings) -> Iterator[Service]:
    """Our receiver listening (in this process) on the test's port."""
    service = Service(dicom_settings)
    try:
        yield service
    finally:
        service.close()
