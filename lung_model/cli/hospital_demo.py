"""`make demo`'s hospital loop, when Orthanc is installed: a local PACS pushes a CT study to
the DICOM receiver `up` started, the running lung_batch_score DAG scores it, and its SR goes
back into the study on Orthanc (`send-results` to Orthanc), where its explorer shows it.
When no results destination is configured, the demo starts Airflow with this Orthanc as
`LUNG_RESULTS_DICOM_DESTINATION` (`local_pacs_destination`) and unpauses `lung_results_out`
after the loop, so the final SR of a study a clinician reviews later follows within 5 minutes.

Orthanc runs as the service `orthanc` (`make stop` stops it) on `ORTHANC_HTTP_PORT` and
`ORTHANC_DICOM_PORT`, its configuration and storage in `LUNG_HOME/orthanc/`. The study is one
demo study's slices as DICOM CT (`exchange.synthetic`), its UIDs derived from its slices, so a
second demo sends the same study: the receiver skips what it holds and nothing is reported
twice. Anything that fails here is reported and the demo goes on: it is an extra.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from lung_model.exchange import orthanc
from lung_model.exchange.deliveries import send_results
from lung_model.exchange.receiver import study_folder
from lung_model.exchange.synthetic import Series, write_series
from lung_model.pipelines.results_out import rule_in_words
from lung_model.platform import services
from lung_model.platform.db import get_engine
from lung_model.platform.names import stored_names
from lung_model.settings import Settings

ORTHANC_HTTP_PORT = 8042
ORTHANC_DICOM_PORT = 4242
SERVICE = "orthanc"


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _ours_or_free(settings: Settings, ports: tuple[int, int]) -> bool:
    """Orthanc's ports are our running service's, or nobody's."""
    return services.running(settings, SERVICE) is not None or not any(map(_port_taken, ports))


def local_pacs_destination(
    settings: Settings, ports: tuple[int, int] = (ORTHANC_HTTP_PORT, ORTHANC_DICOM_PORT)
) -> str | None:
    """Where the demo's lung_results_out sends the SRs: the hospital loop's Orthanc (C-STORE,
    `AET@host:port`) when the loop can run and no results destination is configured (then
    that one is left alone, and no demo study is sent to it); None otherwise."""
    if settings.results_dicom_destination or not orthanc.installed():
        return None
    return _orthanc_destination(ports[1]) if _ours_or_free(settings, ports) else None


def _orthanc_destination(dicom_port: int) -> str:
    return f"{orthanc.AE_TITLE}@127.0.0.1:{dicom_port}"


def _batch_done(settings: Settings, folder: str) -> bool:
    stored = stored_names(settings).name(folder)
    with get_engine(settings).connect() as connection:
        status = connection.execute(
            text("SELECT status FROM scan_batches WHERE study = :s ORDER BY id DESC LIMIT 1"),
            {"s": stored},
        ).scalar()
    return status in ("done", "failed")


def hospital_loop(
    settings: Settings,
    slices: list[Path],
    say: Callable[[str], None],
    timeout: float = 600,
    ports: tuple[int, int] = (ORTHANC_HTTP_PORT, ORTHANC_DICOM_PORT),
) -> bool:
    """Run the loop once; True when the SR is in Orthanc (or Orthanc is not installed)."""
    if not orthanc.installed():
        say("Orthanc is not installed: hospital loop skipped (sudo apt-get install orthanc")
        say("  orthanc-dicomweb dcmtk, then `make demo` again)")
        return True
    http_port, dicom_port = ports
    if not _ours_or_free(settings, ports):
        say(f"ports {http_port}/{dicom_port} are taken: hospital loop skipped")
        return True
    pacs_home = settings.home / "orthanc"
    service = orthanc.service(
        SERVICE, pacs_home, http_port, dicom_port, settings.dicom_ae_title, settings.dicom_port
    )
    pid = services.start(settings, service)
    services.wait_until_up(settings, service, timeout=60)
    say(f"Orthanc (local PACS): pid {pid}, http://127.0.0.1:{http_port}/app/explorer.html")
    client = orthanc.OrthancClient(f"http://127.0.0.1:{http_port}")
    series: Series = write_series(
        pacs_home / "demo-study", slices, seed="\n".join(p.name for p in slices)
    )
    client.upload(series.files)
    client.push_study(series.study_uid)
    say(f"Orthanc pushed study {series.study_uid} ({len(series.files)} CT slices) to the receiver")
    folder = study_folder(series.study_uid)
    deadline = time.monotonic() + timeout
    while not _batch_done(settings, folder):
        if time.monotonic() > deadline:
            say(f"the study was not scored within {timeout:.0f} s: hospital loop stopped")
            return False
        time.sleep(2)
    destination = _orthanc_destination(dicom_port)
    to_orthanc = settings.model_copy(update={"results_dicom_destination": destination})
    outcome = send_results(to_orthanc, get_engine(settings), rule_in_words(settings))
    found = [
        i for i in client.instances_of(series.study_uid) if client.modality_of(str(i["ID"])) == "SR"
    ]
    say(
        f"results out: {outcome.sent} sent, {outcome.failed} failed; "
        f"{len(found)} SR in the study on Orthanc"
    )
    return bool(found)
