"""Results out, exactly once per report version and destination, nothing lost.

`send_results` (the `send-results` command and the `lung_results_out` DAG) does two things:

1. Plan: every report version (`reports.candidates`) gets one `result_deliveries` row per
   configured place (channel and destination), created before any attempt and naming the
   object it carries (the SR's SOP Instance UID, the DiagnosticReport's id; derived from the
   study and version, see `documents.uids`).
2. Deliver the rows that are due: each is taken with `FOR UPDATE SKIP LOCKED`, so two
   senders never send the same row; on success it is marked `sent` (and never sent again),
   on failure it stays `waiting` with its error and the next attempt backed off
   (`LUNG_RESULTS_RETRY_SECONDS`, doubling up to `LUNG_RESULTS_RETRY_MAX_SECONDS`). A sender
   killed between sending and marking sends the same object again on its next run, which
   the PACS and FHIR server take as the same instance (same UID, PUT by id), not a new one.

Places: C-STORE to `LUNG_RESULTS_DICOM_DESTINATION` (`AET@host:port`, calling as
`LUNG_DICOM_AE_TITLE`), STOW-RS to `LUNG_RESULTS_DICOMWEB_URL`, the DiagnosticReport as JSON
into `LUNG_HOME/outbox/` (always) and PUT to `LUNG_RESULTS_FHIR_URL`/DiagnosticReport/<id>.
See https://dicom.nema.org/medical/dicom/current/output/chtml/part04/chapter_B.html and
https://www.hl7.org/fhir/http.html#update
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from lung_model.exchange import documents, reports
from lung_model.platform.names import StoredNames, stored_names
from lung_model.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 30.0  # seconds for a destination to answer

_INSERT = text("""
INSERT INTO result_deliveries (batch_id, report, report_status, channel, destination,
                               study_instance_uid, object_uid)
VALUES (:batch_id, :report, :report_status, :channel, :destination, :study_uid, :object_uid)
ON CONFLICT (batch_id, report, channel, destination) DO NOTHING
""")
_TAKE_DUE = text("""
SELECT id, batch_id, report, channel, destination, attempts
FROM result_deliveries
WHERE status = 'waiting' AND next_attempt_at <= now() AND id > :after
ORDER BY id LIMIT 1
FOR UPDATE SKIP LOCKED
""")
_SENT = text("""
UPDATE result_deliveries SET status = 'sent', sent_at = now(), attempts = attempts + 1,
    last_error = NULL WHERE id = :id
""")
_FAILED = text("""
UPDATE result_deliveries SET attempts = attempts + 1, last_error = :error,
    next_attempt_at = now() + make_interval(secs => :wait) WHERE id = :id
""")


def destinations(settings: Settings) -> list[tuple[str, str]]:
    """The configured places results go: (channel, destination)."""
    found = []
    if settings.results_dicom_destination:
        found.append(("dicom", settings.results_dicom_destination.strip()))
    if settings.results_dicomweb_url:
        found.append(("stow-rs", settings.results_dicomweb_url.rstrip("/")))
    found.append(("fhir-outbox", str(settings.outbox)))
    if settings.results_fhir_url:
        found.append(("fhir", settings.results_fhir_url.rstrip("/")))
    return found


def parse_destination(destination: str) -> tuple[str, str, int]:
    """`AET@host:port` -> (AE title, host, port)."""
    aet, at, address = destination.partition("@")
    host, colon, port = address.rpartition(":")
    if not (at and colon and aet and host and port.isdigit()):
        raise ValueError(f"a DICOM destination is AET@host:port, not {destination!r}")
    return aet, host, int(port)


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failure."""
    wait = settings.results_retry_seconds * 2 ** max(attempts - 1, 0)
    return float(min(wait, settings.results_retry_max_seconds))


@dataclass
class Outcome:
    planned: int = 0  # delivery rows created
    sent: int = 0
    failed: int = 0  # attempts that failed this run (their rows wait for the next)
    skipped: list[str] = field(default_factory=list)  # report versions that cannot be built


@dataclass
class Built:
    """One report version's objects, built once per run and shared by its deliveries."""

    report: reports.StudyReport
    evidence: reports.Evidence
    sr: Any = None
    fhir: Any = None

    def structured_report(self) -> Any:
        if self.sr is None:
            self.sr = documents.structured_report(self.report, self.evidence)
        return self.sr

    def diagnostic_report(self) -> Any:
        if self.fhir is None:
            self.fhir = documents.diagnostic_report(self.report, self.evidence)
        return self.fhir


RuleOf = Callable[[str, str], str | None]  # (model name, version) -> the study rule in words


class Sender:
    def __init__(self, settings: Settings, engine: Engine, rule_of: RuleOf | None = None) -> None:
        self.settings, self.engine = settings, engine
        self.names: StoredNames = stored_names(settings)
        self.rule_of = rule_of
        self._built: dict[tuple[int, str], Built] = {}  # per report version
        self._evidence: dict[int, reports.Evidence] = {}  # per batch: its versions share it

    def build(self, candidate: reports.Candidate) -> Built:
        key = (candidate.batch_id, candidate.report)
        if key not in self._built:
            report = reports.load_report(self.engine, candidate)
            if self.rule_of is not None:
                report.rule = self.rule_of(report.model_name, report.model_version)
            self._built[key] = Built(report, self.evidence(candidate.batch_id, report))
        return self._built[key]

    def evidence(self, batch_id: int, report: reports.StudyReport) -> reports.Evidence:
        """The archived DICOM headers of a batch, read from disk once per run."""
        if batch_id not in self._evidence:
            paths = reports.scored_dicom_paths(self.engine, batch_id)
            self._evidence[batch_id] = reports.read_evidence(report.archive_path, self.names, paths)
        return self._evidence[batch_id]

    def plan(self) -> tuple[int, list[str]]:
        """A delivery row per report version and configured place; (rows created, skipped)."""
        places = destinations(self.settings)
        created, skipped = 0, []
        for candidate in reports.candidates(self.engine, places):
            try:
                built = self.build(candidate)
                study_uid = built.evidence.study_uid
            except (OSError, ValueError) as error:
                log.warning(
                    "report %s of batch %d: %s", candidate.report, candidate.batch_id, error
                )
                skipped.append(f"{candidate.batch_id} {candidate.report}: {error}")
                continue
            ids = documents.uids(study_uid, candidate.report)
            with self.engine.begin() as connection:
                for channel, destination in places:
                    params = {
                        "batch_id": candidate.batch_id,
                        "report": candidate.report,
                        "report_status": candidate.report_status,
                        "channel": channel,
                        "destination": destination,
                        "study_uid": study_uid,
                        "object_uid": ids.fhir_id
                        if channel.startswith("fhir")
                        else ids.sop_instance,
                    }
                    created += connection.execute(_INSERT, params).rowcount
        return created, skipped

    def deliver_due(self) -> tuple[int, int]:
        """Send every due row once; (sent, failed)."""
        sent = failed = 0
        after = 0
        while True:
            with self.engine.begin() as connection:
                row = connection.execute(_TAKE_DUE, {"after": after}).mappings().first()
                if row is None:
                    return sent, failed
                after = int(row["id"])
                try:
                    self.send(row)
                except Exception as error:  # a destination down, refusing, or a bad object
                    wait = backoff(self.settings, int(row["attempts"]) + 1)
                    message = f"{type(error).__name__}: {error}"[:2000]
                    log.warning(
                        "%s to %s failed (retry in %.0f s): %s",
                        row["channel"],
                        row["destination"],
                        wait,
                        message,
                    )
                    connection.execute(_FAILED, {"id": after, "error": message, "wait": wait})
                    failed += 1
                else:
                    connection.execute(_SENT, {"id": after})
                    sent += 1

    def send(self, row: Any) -> None:
        batch_id, report = int(row["batch_id"]), str(row["report"])
        built = self._built.get((batch_id, report))
        if built is None:  # planned in an earlier run
            built = self.build(reports.candidate(self.engine, batch_id, report))
        channel, destination = str(row["channel"]), str(row["destination"])
        if channel == "dicom":
            c_store(self.settings, destination, built.structured_report())
        elif channel == "stow-rs":
            stow_rs(destination, built.structured_report())
        elif channel == "fhir-outbox":
            write_outbox(Path(destination), built.diagnostic_report())
        elif channel == "fhir":
            put_fhir(destination, built.diagnostic_report())
        else:
            raise ValueError(f"unknown channel {channel}")


def send_results(settings: Settings, engine: Engine, rule_of: RuleOf | None = None) -> Outcome:
    """Plan the new report versions, then deliver every due row once (see the module)."""
    sender = Sender(settings, engine, rule_of)
    planned, skipped = sender.plan()
    sent, failed = sender.deliver_due()
    return Outcome(planned, sent, failed, skipped)


def c_store(settings: Settings, destination: str, dataset: Any) -> None:
    """C-STORE one SR to `AET@host:port`; raises unless the PACS answers success."""
    from pynetdicom import AE

    aet, host, port = parse_destination(destination)
    ae = AE(ae_title=settings.dicom_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT
    ae.add_requested_context(documents.COMPREHENSIVE_3D_SR, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate(host, port, ae_title=aet)
    if not association.is_established:
        raise ConnectionError(f"no association with {destination}")
    try:
        status = association.send_c_store(dataset)
    finally:
        association.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise ConnectionError(f"{destination} did not answer the C-STORE")
    if code not in (0x0000, 0xB000, 0xB007, 0xB006):  # success or a warning: stored
        raise RuntimeError(f"{destination} refused the SR: status 0x{code:04X}")


def stow_rs(url: str, dataset: Any) -> None:
    """STOW-RS one SR to a DICOMweb root; raises unless stored."""
    from dicomweb_client.api import DICOMwebClient

    DICOMwebClient(url=url).store_instances([dataset])


def write_outbox(folder: Path, resource: Any) -> Path:
    """The DiagnosticReport as `<outbox>/<id>.json`, written whole (temporary file, rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{resource.id}.json"
    partial = folder / f".{resource.id}.json.partial"
    partial.write_text(resource.model_dump_json(indent=2))
    os.replace(partial, target)
    return target


def put_fhir(base_url: str, resource: Any) -> None:
    """PUT the DiagnosticReport by its id (create or replace: idempotent)."""
    body = resource.model_dump_json().encode()
    request = urllib.request.Request(
        f"{base_url}/DiagnosticReport/{resource.id}", data=body, method="PUT"
    )
    request.add_header("Content-Type", "application/fhir+json")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{base_url} answered {response.status}")
