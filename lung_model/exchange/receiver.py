"""The DICOM front door: a storage SCP that writes what the PACS pushes into the inbox.

`python -m lung_model receive` listens on `LUNG_DICOM_BIND_HOST:LUNG_DICOM_PORT` as
`LUNG_DICOM_AE_TITLE` and accepts associations only from the calling AE titles in
`LUNG_DICOM_ALLOWED_AETS` (any other is rejected at association, before a byte of data).
Each instance is written, as received (file meta and all), to
`inbox/<Study Instance UID>/<SOP Instance UID>.dcm`, real names on disk also with
`LUNG_PSEUDONYMISE_NAMES`: the scorer is the one place that stores a folder's pseudonym
(`platform.names`), so a reviewer finds the study by its UID. A file goes first to
`LUNG_HOME/receiving/partial/` and is renamed into place, so the scorer never reads half of
one. An instance whose SOP Instance UID this study already holds (in the inbox, being scored,
archived or quarantined) is acknowledged and not written again: a re-sent series is scored
once. So is a report this system wrote itself (`own_report`: its SR, come back from a PACS
that routes whole studies). Nothing is checked beyond that: a non-CT or broken instance is
written too and takes the scorer's path, which quarantines it with the decoder's reason, as
from a folder.

A study is ready once no instance of it arrived for `LUNG_DICOM_QUIET_SECONDS`: the receiver
then writes the ready marker (`LUNG_READY_MARKER`). Which studies are still arriving is kept
on disk (`LUNG_HOME/receiving/studies/<folder>`, touched per instance), so a receiver killed
mid-series marks them when it is back, after the same quiet period. An instance arriving
after the marker was written takes the marker away again until the study is quiet; one
arriving after the scorer claimed the study starts a new folder of the same name, which the
scorer scores together with the study's earlier instances, superseding the earlier batch
(`scoring.grown`).
See https://pydicom.github.io/pynetdicom/stable/examples/storage.html and
https://dicom.nema.org/medical/dicom/current/output/chtml/part07/chapter_9.html#sect_9.1.1
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from lung_model.exchange.documents import COMPREHENSIVE_3D_SR, MANUFACTURER
from lung_model.imaging.dicom import decodable_transfer_syntaxes
from lung_model.scoring.inbox import CLAIM_SEPARATOR
from lung_model.settings import Settings

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # C-STORE "Refused: Out of Resources"
UID = re.compile(r"[0-9]+(\.[0-9]+)*")
UNKNOWN_STUDY = "no-study-uid"  # the folder of instances whose Study Instance UID is unreadable
FORGET_AFTER = 24 * 3600.0  # seconds a study's instance list stays in memory after its last one


def safe_uid(uid: str) -> str:
    """A UID as a file or folder name: itself when it is one (digits and dots, at most 64),
    else `x-` and a hash of it (never a path, never a hidden file)."""
    uid = uid.strip().rstrip("\x00").strip()
    if len(uid) <= 64 and UID.fullmatch(uid):
        return uid
    return "x-" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def allowed_callers(setting: str) -> list[str]:
    """The calling AE titles of `LUNG_DICOM_ALLOWED_AETS`; empty for `*` (any)."""
    titles = [title.strip() for title in setting.split(",") if title.strip()]
    return [] if "*" in titles else titles


def study_folder(study_uid: str | None) -> str:
    """The inbox folder of a study: its UID made safe."""
    return safe_uid(study_uid) if study_uid else UNKNOWN_STUDY


@dataclass(frozen=True)
class Stored:
    folder: str  # the study folder in the inbox
    file: str  # the instance's file name in it
    written: bool  # False: this study already held the instance


class Receiver:
    """Writes instances into study folders and marks them ready when they go quiet."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partial = settings.home / "receiving" / "partial"
        self.journal = settings.home / "receiving" / "studies"
        for folder in (settings.inbox, self.partial, self.journal):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # study folder -> when its last instance arrived
        self._held: dict[str, set[str]] = {}  # study folder -> instance files it holds anywhere
        self._seen: dict[str, float] = {}  # study folder -> its last instance, marked or not
        for entry in self.journal.iterdir():  # studies a killed receiver left arriving
            self._last[entry.name] = entry.stat().st_mtime

    def _holdings(self, folder: str) -> set[str]:
        """The instance files a study folder of this name holds: in the inbox, claimed,
        archived or quarantined (`<folder>` or `<folder>~<token>`, see `scoring.inbox`)."""
        settings, found = self.settings, set[str]()
        places = [settings.inbox / folder, *settings.processing.glob(f"*/{folder}")]
        for root in (settings.archive, settings.quarantine):
            places += [root / folder, *root.glob(f"{glob.escape(folder)}{CLAIM_SEPARATOR}*")]
        for place in places:
            with contextlib.suppress(OSError):
                found.update(entry.name for entry in os.scandir(place))
        return found

    def store(self, data: bytes, study_uid: str | None, sop_uid: str) -> Stored:
        """Write one instance's file bytes into its study folder, once per SOP Instance UID."""
        folder, file = study_folder(study_uid), safe_uid(sop_uid) + ".dcm"
        with self._lock:
            held = self._held.get(folder)
            if held is None:
                held = self._held[folder] = self._holdings(folder)
            if file in held:
                self._touch(folder)
                return Stored(folder, file, False)
            held.add(file)
            self._touch(folder)
        partial = self.partial / f"{folder}-{file}"
        partial.write_bytes(data)
        target = self.settings.inbox / folder
        (target / self.settings.ready_marker).unlink(missing_ok=True)  # arriving again: not quiet
        for _ in range(3):  # the scorer may claim the folder between mkdir and rename
            target.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(partial, target / file)
                break
            except FileNotFoundError:
                continue
        else:
            raise OSError(f"study folder {folder} kept vanishing while {file} was written")
        return Stored(folder, file, True)

    def _touch(self, folder: str) -> None:
        now = time.time()
        self._last[folder] = self._seen[folder] = now
        (self.journal / folder).touch()

    def mark_quiet(self, now: float | None = None) -> list[str]:
        """Write the ready marker of every study quiet for the quiet period; their folders."""
        now = time.time() if now is None else now
        quiet = self.settings.dicom_quiet_seconds
        marked = []
        with self._lock:
            for folder, last in list(self._last.items()):
                if now - last < quiet:
                    continue
                target = self.settings.inbox / folder
                if target.is_dir():
                    (target / self.settings.ready_marker).touch()
                    marked.append(folder)
                (self.journal / folder).unlink(missing_ok=True)
                del self._last[folder]
            for folder in [f for f, seen in self._seen.items() if now - seen > FORGET_AFTER]:
                del self._held[folder], self._seen[folder]  # read from disk again if it comes
        for folder in marked:
            log.info("study %s is quiet: marked ready", folder)
        return marked

    def handle_store(self, event: Any) -> int:
        """pynetdicom's C-STORE handler: write the instance, answer a status."""
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        try:
            study_uid = str(event.dataset.get("StudyInstanceUID", "") or "") or None
            ours = own_report(event.dataset)
        except Exception:  # an unreadable data set still gets its folder, and its reason
            study_uid, ours = None, False
        if ours:
            log.info("%s is this system's own report, sent back: not stored", sop_uid)
            return SUCCESS
        try:
            data = event.encoded_dataset(include_meta=True)
            if not sop_uid:
                sop_uid = "x-" + hashlib.sha256(data).hexdigest()[:24]
            stored = self.store(data, study_uid, sop_uid)
        except OSError as error:
            log.error("could not write instance %s: %s", sop_uid, error)
            return OUT_OF_RESOURCES
        if stored.written:
            log.debug("stored %s/%s", stored.folder, stored.file)
        else:
            log.info("%s/%s was received before: not stored again", stored.folder, stored.file)
        return SUCCESS


def own_report(dataset: Any) -> bool:
    """Whether an instance is a report this system wrote (`documents.structured_report`): a
    PACS that routes whole studies sends our SRs back with the slices, and each would
    otherwise start a batch of its own that fails with nothing to score."""
    return (
        str(dataset.get("SOPClassUID", "")) == COMPREHENSIVE_3D_SR
        and str(dataset.get("Manufacturer", "")) == MANUFACTURER
    )


def application_entity(settings: Settings) -> Any:
    """The storage SCP's AE: every storage SOP class in every transfer syntax the decoder
    reads (`decodable_transfer_syntaxes`: uncompressed, RLE, JPEG, JPEG-LS, JPEG 2000, HTJ2K),
    verification (C-ECHO), the allow-list. pynetdicom's default is the four uncompressed
    syntaxes alone: a sender that cannot transcode its JPEG Lossless CT could not deliver."""
    from pynetdicom import AE, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=settings.dicom_ae_title)
    syntaxes = decodable_transfer_syntaxes()
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax:  # always set in pynetdicom's list; typed Optional
            ae.add_supported_context(context.abstract_syntax, syntaxes)
    ae.add_supported_context(Verification)
    ae.require_calling_aet = allowed_callers(settings.dicom_allowed_aets)
    ae.maximum_associations = 16
    return ae


class Service:
    """The receiver listening, and its thread that marks quiet studies ready."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        from pynetdicom import evt

        self.receiver = Receiver(settings)
        self.ae = application_entity(settings)
        address = (settings.dicom_bind_host, settings.dicom_port if port is None else port)
        handlers = [(evt.EVT_C_STORE, self.receiver.handle_store)]
        self.server = self.ae.start_server(address, block=False, evt_handlers=handlers)
        self.port = int(self.server.server_address[1])
        self._stop = threading.Event()
        self._marker = threading.Thread(target=self._mark_loop, name="ready-marker", daemon=True)
        self._marker.start()
        log.info(
            "DICOM receiver %s listening on %s:%d (calling AEs: %s)",
            settings.dicom_ae_title,
            address[0],
            self.port,
            settings.dicom_allowed_aets,
        )

    def _mark_loop(self) -> None:
        period = min(1.0, max(self.receiver.settings.dicom_quiet_seconds / 4, 0.05))
        while not self._stop.wait(period):
            try:
                self.receiver.mark_quiet()
            except OSError as error:  # a full disk, a folder removed by hand: try again
                log.error("marking quiet studies ready failed: %s", error)

    def close(self) -> None:
        self._stop.set()
        self._marker.join(timeout=5)
        self.server.shutdown()


def serve(settings: Settings, stop: threading.Event) -> None:
    """Receive until `stop` is set (the CLI sets it on SIGTERM or Ctrl-C)."""
    service = Service(settings)
    try:
        stop.wait()
    finally:
        service.close()
