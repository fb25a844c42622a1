"""The DICOM receiver against a real PACS (Orthanc pushes) and dcmtk's storescu as a second
sender: one folder per study, one file per SOP Instance UID, the ready marker once quiet,
unknown callers refused at association, and a receiver killed mid-series. The receiver's own
rules are also tested without them (those run on any machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from dicom_series import write_series
from orthanc_pacs import Orthanc, needs_orthanc

from lung_model.exchange.receiver import Receiver, Service, allowed_callers, safe_uid
from lung_model.imaging.dicom import decode_dicom
from lung_model.settings import PROJECT_ROOT, Settings


def storescu(settings: Settings, files: list[Path], calling: str = "STORESCU") -> int:
    """dcmtk's storescu sends `files` to our receiver; its exit code."""
    argv = ["storescu", "-aet", calling, "-aec", settings.dicom_ae_title, "127.0.0.1"]
    argv += [str(settings.dicom_port), *map(str, files)]
    return subprocess.run(argv, capture_output=True, timeout=60).returncode


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_uids_become_safe_names_and_the_allow_list_reads_star_as_any() -> None:
    assert safe_uid("1.2.840.10008.1 \x00") == "1.2.840.10008.1"
    for hostile in ("../../etc", ".hidden", "1.2/3", "1." * 40):
        assert safe_uid(hostile).startswith("x-") and "/" not in safe_uid(hostile)
    assert allowed_callers(" ORTHANC , PACS2,") == ["ORTHANC", "PACS2"]
    assert allowed_callers("ORTHANC,*") == []


def test_an_instance_is_written_once_and_its_study_marked_ready_once_quiet(
    dicom_settings: Settings,
) -> None:
    receiver = Receiver(dicom_settings)
    study = dicom_settings.inbox / "1.2.3"
    assert receiver.store(b"first", "1.2.3", "1.2.3.1").written
    assert not receiver.store(b"again", "1.2.3", "1.2.3.1").written  # re-sent: kept as it was
    assert (study / "1.2.3.1.dcm").read_bytes() == b"first"
    arrived = time.time()
    assert receiver.mark_quiet(arrived) == []  # not quiet yet
    assert receiver.mark_quiet(arrived + dicom_settings.dicom_quiet_seconds) == ["1.2.3"]
    assert (study / dicom_settings.ready_marker).is_file()
    receiver.store(b"late", "1.2.3", "1.2.3.2")  # arriving again: not ready until quiet
    assert not (study / dicom_settings.ready_marker).exists()
    assert receiver.store(b"x", None, "1.9").folder == "no-study-uid"


@needs_orthanc
def test_a_series_pushed_by_orthanc_lands_once_per_instance_and_is_marked_ready_when_quiet(
    tmp_path: Path, dicom_settings: Settings, orthanc: Orthanc, receiver: Service
) -> None:
    series = write_series(tmp_path / "series", 6)
    orthanc.upload(series.files)
    orthanc.push_study(series.study_uid)
    study = dicom_settings.inbox / series.study_uid
    assert sorted(p.name for p in study.iterdir() if p.suffix == ".dcm") == sorted(
        f"{uid}.dcm" for uid in series.sop_uids
    )
    marker = study / dicom_settings.ready_marker
    assert not marker.exists()  # not quiet yet
    wait_for(marker.exists)

    # The same series again, from Orthanc and from storescu: nothing new is written, and once
    # the study is archived (scored), a re-sent instance does not start a new study folder.
    orthanc.push_study(series.study_uid)
    assert storescu(dicom_settings, series.files[:2]) == 0
    assert len(list(study.glob("*.dcm"))) == 6
    wait_for(marker.exists)
    os.rename(study, dicom_settings.archive / f"{series.study_uid}~20261203T101500-abcdef")
    orthanc.push_study(series.study_uid)
    assert not study.exists()
    assert not any(dicom_settings.home.joinpath("receiving", "partial").iterdir())


@needs_orthanc
def test_an_unknown_calling_ae_is_refused_at_association(
    tmp_path: Path, dicom_settings: Settings, receiver: Service
) -> None:
    series = write_series(tmp_path / "series", 1)
    assert storescu(dicom_settings, series.files, calling="INTRUDER") != 0
    assert not any(dicom_settings.inbox.iterdir())
    assert storescu(dicom_settings, series.files, calling="LUNGTEST") == 0
    assert (dicom_settings.inbox / series.study_uid / f"{series.sop_uids[0]}.dcm").is_file()


@needs_orthanc
def test_pseudonymised_names_leave_the_uid_on_disk_for_the_scorer_to_pseudonymise(
    tmp_path: Path, dicom_settings: Settings
) -> None:
    """The scorer is the one place that pseudonymises (once): a folder named by a pseudonym
    would be stored as the pseudonym of that pseudonym, found by no one who knows the UID."""
    dicom_settings.pseudonymise_names = True
    service = Service(dicom_settings)
    try:
        series = write_series(tmp_path / "series", 2)
        assert storescu(dicom_settings, series.files) == 0
    finally:
        service.close()
    assert [p.name for p in dicom_settings.inbox.iterdir()] == [series.study_uid]


@needs_orthanc
def test_a_receiver_killed_mid_series_marks_the_study_once_it_is_back(
    tmp_path: Path, dicom_settings: Settings
) -> None:
    series = write_series(tmp_path / "series", 8)
    env = {
        **os.environ,
        "LUNG_HOME": str(dicom_settings.home),
        "LUNG_DICOM_PORT": str(dicom_settings.dicom_port),
        "LUNG_DICOM_QUIET_SECONDS": "3",
        "LUNG_DICOM_ALLOWED_AETS": "STORESCU",
    }

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "lung_model", "receive"], env=env, cwd=PROJECT_ROOT
        )
        wait_for(lambda: storescu_echo(dicom_settings), timeout=60)
        return process

    first = start()
    try:
        assert storescu(dicom_settings, series.files[:5]) == 0
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    study = dicom_settings.inbox / series.study_uid
    assert len(list(study.glob("*.dcm"))) == 5 and not (study / "_READY").exists()

    second = start()
    try:
        assert storescu(dicom_settings, series.files) == 0  # the PACS sends it all again
        wait_for(lambda: (study / "_READY").exists(), timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert sorted(p.name for p in study.glob("*.dcm")) == sorted(
        f"{u}.dcm" for u in series.sop_uids
    )


def storescu_echo(settings: Settings) -> bool:
    argv = ["echoscu", "-aet", "STORESCU", "-aec", settings.dicom_ae_title, "127.0.0.1"]
    return subprocess.run([*argv, str(settings.dicom_port)], capture_output=True).returncode == 0


@needs_orthanc
def test_compressed_ct_is_accepted_as_sent_and_decodes_to_the_same_slice(
    tmp_path: Path, dicom_settings: Settings, receiver: Service
) -> None:
    """A modality or archive that holds its CT as JPEG Lossless, JPEG-LS or RLE need not
    transcode: the receiver accepts what the decoder reads (pynetdicom's default was the
    uncompressed syntaxes alone, and storescu failed each of these)."""
    series = write_series(tmp_path / "series", 3)
    compress = {  # dcmtk's encoder, the storescu option proposing that syntax, the syntax
        "dcmcjpeg": ("-xs", "1.2.840.10008.1.2.4.70"),
        "dcmcjpls": ("-xt", "1.2.840.10008.1.2.4.80"),
        "dcmcrle": ("-xr", "1.2.840.10008.1.2.5"),
    }
    for source, (encoder, (propose, syntax)) in zip(series.files, compress.items(), strict=True):
        packed = tmp_path / f"{encoder}.dcm"
        subprocess.run([encoder, str(source), str(packed)], check=True, timeout=60)
        argv = ["storescu", "-aet", "STORESCU", "-aec", dicom_settings.dicom_ae_title, propose]
        argv += ["127.0.0.1", str(dicom_settings.dicom_port), str(packed)]
        sent = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0 and "Failed" not in sent.stderr, sent.stderr
        uid = pydicom.dcmread(packed).SOPInstanceUID
        stored = dicom_settings.inbox / series.study_uid / f"{uid}.dcm"
        assert str(pydicom.dcmread(stored).file_meta.TransferSyntaxUID) == syntax
        original = decode_dicom(source.read_bytes()).gray
        assert np.array_equal(decode_dicom(stored.read_bytes()).gray, original)
