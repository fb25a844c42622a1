"""A real PACS for the tests: Debian's Orthanc started with its own configuration
(`lung_model.exchange.orthanc.write_config`) in a temporary folder, DICOM and HTTP on free
ports, reached on loopback; our receiver is its modality `LUNG`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lung_model.exchange.orthanc import AE_TITLE, ORTHANC, OrthancClient, installed, write_config

__all__ = ["Orthanc", "free_port", "installed", "needs_orthanc"]

needs_orthanc = pytest.mark.skipif(
    not installed(),
    reason="Orthanc and dcmtk are not installed (apt-get install orthanc orthanc-dicomweb "
    "dcmtk; .ci/run installs them)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Orthanc(OrthancClient):
    folder: Path
    lung_port: int  # where our receiver listens (Orthanc's modality LUNG)
    lung_aet: str = "LUNGAI"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        OrthancClient.__init__(self, f"http://127.0.0.1:{self.http_port}")

    @property
    def destination(self) -> str:
        return f"{AE_TITLE}@127.0.0.1:{self.dicom_port}"

    def start(self, timeout: float = 30.0) -> Orthanc:
        config = write_config(
            self.folder, self.http_port, self.dicom_port, self.lung_aet, self.lung_port
        )
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
