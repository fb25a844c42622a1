"""A real PACS for the tests: Debian's Orthanc started with its own JSON configuration in a
temporary folder, DICOM and HTTP on free loopback ports, its REST API and DICOMweb plugin
on, no authentication (loopback only). Our receiver is its modality `LUNG`.
See https://orthanc.uclouvain.be/book/users/configuration.html and
https://orthanc.uclouvain.be/api/
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANC"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def installed() -> bool:
    return ORTHANC.exists() and shutil.which("storescu") is not None


@dataclass
class Orthanc:
    folder: Path
    lung_port: int  # where our receiver listens (Orthanc's modality LUNG)
    lung_aet: str = "LUNGAI"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def destination(self) -> str:
        return f"{AE_TITLE}@127.0.0.1:{self.dicom_port}"

    def configure(self) -> Path:
        config = {
            "Name": "lung-test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "DicomAet": AE_TITLE,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            # Orthanc 1.10 listens on every interface (it has no bind address): it takes
            # DICOM only from our receiver's AE title on loopback, HTTP only from loopback.
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {"LUNG": [self.lung_aet, "127.0.0.1", self.lung_port]},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "SaveJobs": False,
            "StableAge": 1,
            "HttpServerEnabled": True,
            "HttpDescribeErrors": True,
        }
        path = self.folder / "orthanc.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=1))
        return path

    def start(self, timeout: float = 30.0) -> Orthanc:
        config = self.configure()
        log = (self.folder / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [str(ORTHANC), "--no-jobs", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited:\n{self.log_tail()}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise TimeoutError(f"Orthanc did not answer in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def log_tail(self) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (loopback)
            data = response.read()
        if response.headers.get_content_type() == "application/json":
            return json.loads(data)
        return data

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, payload: Any) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", path, body)

    def upload(self, files: list[Path]) -> list[str]:
        """Store files in Orthanc through its REST API; their Orthanc instance ids."""
        return [self.post("/instances", path.read_bytes())["ID"] for path in files]

    def push_study(self, study_uid: str, *, synchronous: bool = True) -> Any:
        """C-STORE a study of Orthanc's to our receiver (its modality LUNG)."""
        found = self.post("/tools/lookup", study_uid.encode())
        study = next(item["ID"] for item in found if item["Type"] == "Study")
        payload: dict[str, Any] = {"Resources": [study], "Synchronous": synchronous}
        return self.post("/modalities/LUNG/store", payload)

    def instances_of(self, study_uid: str) -> list[dict[str, Any]]:
        found = self.post(
            "/tools/find",
            {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
        )
        return list(found)
