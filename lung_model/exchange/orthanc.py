"""A local PACS for the demo, the tests and the benchmark: Debian's Orthanc (`apt-get install
orthanc orthanc-dicomweb dcmtk`) run with a JSON configuration of ours, and the few REST calls
we make to it (store files, push a study to our receiver, list a study's instances).

Orthanc 1.10 listens on every interface (it has no bind address), so the configuration
takes DICOM only from our receiver's AE title on loopback (the modality `LUNG`) and HTTP
only from loopback, without authentication.
See https://orthanc.uclouvain.be/book/users/configuration.html and
https://orthanc.uclouvain.be/api/
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from lung_model.platform import services

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANC"


def installed() -> bool:
    """Orthanc, its DICOMweb plugin and dcmtk's tools are on this machine."""
    return ORTHANC.exists() and DICOMWEB_PLUGIN.exists() and shutil.which("storescu") is not None


def write_config(
    folder: Path, http_port: int, dicom_port: int, receiver_aet: str, receiver_port: int
) -> Path:
    """Orthanc's configuration in `folder` (its storage below it); the file's path."""
    config = {
        "Name": "lung-local-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "DicomAet": AE_TITLE,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowEcho": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {"LUNG": [receiver_aet, "127.0.0.1", receiver_port]},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False,
        "StableAge": 1,
        "HttpDescribeErrors": True,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def service(
    name: str, folder: Path, http_port: int, dicom_port: int, receiver_aet: str, receiver_port: int
) -> services.Service:
    """Orthanc as a local service (`platform.services` starts and stops it), configured in
    `folder` (`write_config`), up once its REST API answers."""
    config = write_config(folder, http_port, dicom_port, receiver_aet, receiver_port)
    return services.Service(
        name,
        [str(ORTHANC), "--no-jobs", str(config)],
        health_url=f"http://127.0.0.1:{http_port}/system",
    )


class OrthancClient:
    """Orthanc's REST API at `url` (loopback)."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            data = response.read()
            kind = response.headers.get_content_type()
        return json.loads(data) if kind == "application/json" else data

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, payload: Any) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", path, body)

    def upload(self, files: list[Path]) -> list[str]:
        """Store files in Orthanc; their Orthanc instance ids."""
        return [self.post("/instances", path.read_bytes())["ID"] for path in files]

    def push_study(self, study_uid: str, modality: str = "LUNG") -> Any:
        """C-STORE one of Orthanc's studies to a modality (our receiver), synchronously."""
        found = self.post("/tools/lookup", study_uid.encode())
        study = next(item["ID"] for item in found if item["Type"] == "Study")
        return self.post(
            f"/modalities/{modality}/store", {"Resources": [study], "Synchronous": True}
        )

    def instances_of(self, study_uid: str) -> list[dict[str, Any]]:
        """The study's instances (with their main DICOM tags)."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
        return list(self.post("/tools/find", query))

    def modality_of(self, instance_id: str) -> str:
        return str(self.get(f"/instances/{instance_id}/simplified-tags").get("Modality", ""))
