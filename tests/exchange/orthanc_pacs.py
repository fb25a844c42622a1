"""A real PACS for the tests: Debian's Orthanc run as a local service (`exchange.orthanc`,
started and stopped by `platform.services` under the test's `LUNG_HOME`), configured in a
temporary folder, DICOM and HTTP on free ports, reached on loopback; our receiver (at the
settings' `dicom_port`) is its modality `LUNG`."""

from __future__ import annotations

from pathlib import Path

import pytest

from lung_model.exchange import orthanc
from lung_model.exchange.orthanc import AE_TITLE, OrthancClient, installed
from lung_model.platform import services
from lung_model.platform.services import free_port
from lung_model.settings import Settings

__all__ = ["Orthanc", "installed", "needs_orthanc"]

needs_orthanc = pytest.mark.skipif(
    not installed(),
    reason="Orthanc and dcmtk are not installed (apt-get install orthanc orthanc-dicomweb "
    "dcmtk; make pacs and .ci/run install them)",
)


class Orthanc(OrthancClient):
    """Orthanc on free ports, storing in `folder`, pushing to the receiver of `settings`."""

    def __init__(self, settings: Settings, folder: Path, lung_aet: str = "LUNGAI") -> None:
        self.settings, self.dicom_port, http_port = settings, free_port(), free_port()
        super().__init__(f"http://127.0.0.1:{http_port}")
        self.service = orthanc.service(
            "orthanc", folder, http_port, self.dicom_port, lung_aet, settings.dicom_port
        )

    @property
    def destination(self) -> str:
        return f"{AE_TITLE}@127.0.0.1:{self.dicom_port}"

    def start(self, timeout: float = 30.0) -> Orthanc:
        services.start(self.settings, self.service)
        services.wait_until_up(self.settings, self.service, timeout)
        return self

    def stop(self) -> None:
        services.stop(self.settings, self.service.name, grace_seconds=15)
