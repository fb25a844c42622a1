"""The whole loop against a real PACS: Orthanc pushes a CT series (with a non-CT and a broken
instance beside it) to our receiver, the tiny feature model scores it, the TID 1500 SR lands
back in the study on Orthanc (read back by its REST API and dcmtk's dsrdump) and the FHIR
DiagnosticReport validates; each report version is delivered once, also across a PACS that
is down and comes back."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_series import ct_instance, write_series
from fhir.resources.diagnosticreport import DiagnosticReport
from orthanc_pacs import Orthanc, needs_orthanc
from sqlalchemy import Engine, text
from tiny_models import FEATURE_RUN, TrainedRun

from lung_model.exchange import documents
from lung_model.exchange.deliveries import send_results
from lung_model.exchange.receiver import Service
from lung_model.pipelines.results_out import rule_in_words
from lung_model.platform.db import get_engine
from lung_model.platform.names import stored_names
from lung_model.review.reviews import add_review
from lung_model.scoring.engine import Scorer
from lung_model.scoring.inbox import find_ready_studies
from lung_model.scoring.inference import LoadedModel
from lung_model.settings import Settings

pytestmark = needs_orthanc


@pytest.fixture
def results_settings(dicom_settings: Settings, empty_pg_url: str) -> Settings:
    """A database of the test's own: the deliveries it sees are its own."""
    dicom_settings.database_url = empty_pg_url
    dicom_settings.results_retry_seconds = 0.0  # a failed delivery is due again at once
    return dicom_settings


def score_ready(settings: Settings, engine: Engine, feature_run: TrainedRun, pg_url: str) -> None:
    model = LoadedModel.load(feature_run.settings(pg_url, FEATURE_RUN), f"models:/{FEATURE_RUN}/1")
    scorer = Scorer(model, engine, settings, workers=1)
    for folder in find_ready_studies(settings):
        scorer.score_claimed(folder)


def wait_ready(settings: Settings, study: Path) -> None:
    import time

    deadline = time.monotonic() + 20
    while not (study / settings.ready_marker).exists():
        assert time.monotonic() < deadline, "the study was never marked ready"
        time.sleep(0.1)


def sr_instances(pacs: Orthanc, study_uid: str) -> list[dict[str, object]]:
    found = pacs.instances_of(study_uid)
    return [i for i in found if pacs.modality_of(str(i["ID"])) == "SR"]


def dsrdump(pacs: Orthanc, instance_id: str, folder: Path) -> str:
    path = folder / f"{instance_id}.dcm"
    path.write_bytes(pacs.get(f"/instances/{instance_id}/file"))
    done = subprocess.run(
        ["dsrdump", "+Pl", "+Pu", str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_orthanc_to_score_to_sr_in_orthanc_and_fhir_once_per_report_version(
    tmp_path: Path,
    results_settings: Settings,
    orthanc: Orthanc,
    receiver: Service,
    feature_run: TrainedRun,
    pg_url: str,
) -> None:
    settings = results_settings
    series = write_series(tmp_path / "series", 5)
    orthanc.upload(series.files)
    orthanc.push_study(series.study_uid)
    # A second sender, dcmtk's storescu, adds an MR instance and a CT whose pixel data is
    # cut short to the same study: both must end quarantined with the decoder's reason.
    odd = tmp_path / "odd"
    odd.mkdir()
    mr = ct_instance(np.zeros((64, 64), np.uint8), series.study_uid, series.series_uid, 90)
    mr.Modality = "MR"
    mr.save_as(odd / "mr.dcm", enforce_file_format=True)
    broken = ct_instance(np.zeros((64, 64), np.uint8), series.study_uid, series.series_uid, 91)
    broken.PixelData = broken.PixelData[:100]
    broken.save_as(odd / "broken.dcm", enforce_file_format=True)
    argv = ["storescu", "-aet", "STORESCU", "-aec", settings.dicom_ae_title, "127.0.0.1"]
    sent = subprocess.run(
        [*argv, str(settings.dicom_port), str(odd / "mr.dcm"), str(odd / "broken.dcm")],
        capture_output=True,
        text=True,
    )
    assert sent.returncode == 0, sent.stderr
    study = settings.inbox / series.study_uid
    wait_ready(settings, study)

    engine = get_engine(settings)
    score_ready(settings, engine, feature_run, pg_url)
    with engine.connect() as connection:
        reasons = dict(
            connection.execute(
                text("SELECT path, reason FROM images WHERE status = 'quarantined'")
            ).all()
        )
        scored = connection.execute(
            text("SELECT count(*) FROM images WHERE status = 'scored'")
        ).scalar_one()
    assert scored == 5
    assert "modality MR is not CT" in reasons[f"{mr.SOPInstanceUID}.dcm"]
    assert "pixel data" in reasons[f"{broken.SOPInstanceUID}.dcm"]

    # The model serves by operator override, as after `make demo`: the reports must say so in
    # the PACS and the EHR, where the dashboard's red banner is not seen.
    with engine.begin() as connection:
        for decision, actor in (("rejected", "gate"), ("override", "make-demo")):
            connection.execute(
                text(
                    "INSERT INTO promotion_events (model_name, candidate_version, decision,"
                    " reason, actor) VALUES (:m, '1', :d, 'normal studies called malignant"
                    " 0.43 > ceiling 0.20', :a)"
                ),
                {"m": FEATURE_RUN, "d": decision, "a": actor},
            )

    settings.results_dicom_destination = orthanc.destination
    rule_of = rule_in_words(feature_run.settings(pg_url, FEATURE_RUN))
    first = send_results(settings, engine, rule_of)
    assert (first.planned, first.sent, first.failed, first.skipped) == (2, 2, 0, [])

    [sr] = sr_instances(orthanc, series.study_uid)
    ids = documents.uids(series.study_uid, f"model:{FEATURE_RUN}:1")
    assert sr["MainDicomTags"]["SOPInstanceUID"] == ids.sop_instance
    dump = dsrdump(orthanc, str(sr["ID"]), tmp_path)
    for said in (
        "Imaging Measurement Report",
        "Lung",
        FEATURE_RUN,
        "Probability of malignant",
        "Study verdict",
        "PRELIMINARY",
        "study rule: Study verdict: malignant when",
        '"Caution"',
        "Safety gate not passed: not for clinical use",
    ):
        assert said in dump, f"{said!r} not in the SR:\n{dump}"
    tags = orthanc.get(f"/instances/{sr['ID']}/simplified-tags")
    assert tags["SeriesDescription"] == "AI lung CT triage (preliminary; not for clinical use)"
    assert sum(uid in dump for uid in series.sop_uids) >= 1  # the slices that drove the call

    report = DiagnosticReport.model_validate_json(
        (settings.outbox / f"{ids.fhir_id}.json").read_text()
    )
    assert report.status == "preliminary"
    assert "promoted by operator override" in report.conclusion
    assert "Not for clinical use." in report.conclusion
    assert report.study[0].identifier.value == f"urn:oid:{series.study_uid}"
    assert {o.id for o in report.contained if o.get_resource_type() == "Observation"} == {
        "p-normal",
        "p-benign",
        "p-malignant",
    }

    again = send_results(settings, engine, rule_of)
    assert (again.planned, again.sent, again.failed) == (0, 0, 0)

    # The PACS goes down; a clinician reviews: the final report waits for it, then arrives once.
    orthanc.stop()
    with engine.connect() as connection:
        batch_id, predicted = connection.execute(
            text("SELECT batch_id, predicted_class FROM study_results")
        ).one()
    review_id = add_review(
        engine,
        batch_id=batch_id,
        reviewer="dr.lee",
        label="benign" if predicted != "benign" else "normal",
        predicted_class=predicted,
        model_name=FEATURE_RUN,
        model_version="1",
    )
    down = send_results(settings, engine, rule_of)
    assert (down.planned, down.sent, down.failed) == (2, 1, 1)
    with engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT channel, attempts, last_error FROM result_deliveries"
                " WHERE status = 'waiting'"
            )
        ).all()
    assert [(c, a) for c, a, _ in waiting] == [("dicom", 1)] and waiting[0][2]

    orthanc.start()
    back = send_results(settings, engine, rule_of)
    assert (back.planned, back.sent, back.failed) == (0, 1, 0)
    assert send_results(settings, engine, rule_of).sent == 0
    found = sr_instances(orthanc, series.study_uid)
    final_ids = documents.uids(series.study_uid, f"review:{review_id}")
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in found) == sorted(
        [ids.sop_instance, final_ids.sop_instance]
    )
    final = next(i for i in found if i["MainDicomTags"]["SOPInstanceUID"] == final_ids.sop_instance)
    final_dump = dsrdump(orthanc, str(final["ID"]), tmp_path)
    assert "VERIFIED" in final_dump and "dr.lee" in final_dump
    assert "Caution" not in final_dump  # the reviewer's label: the model's cautions were seen
    amends = pydicom.dcmread(io.BytesIO(orthanc.get(f"/instances/{final['ID']}/file")))
    [predecessor] = amends.PredecessorDocumentsSequence
    [prior] = predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert prior.ReferencedSOPInstanceUID == ids.sop_instance  # the preliminary SR it amends
    amended = DiagnosticReport.model_validate_json(
        (settings.outbox / f"{final_ids.fhir_id}.json").read_text()
    )
    assert amended.status == "final" and amended.resultsInterpreter[0].display == "dr.lee"
    assert "override" not in amended.conclusion

    # A PACS that routes whole studies sends the study back, our two SRs with it: the slices
    # were scored before and the SRs are our own, so no new study folder (and no batch that
    # fails with nothing to score) starts.
    orthanc.push_study(series.study_uid)
    assert not study.exists()


class FhirServer:
    """A FHIR endpoint on loopback that records each PUT; it answers 503 `down` times first."""

    def __init__(self, down: int = 0) -> None:
        import http.server
        import threading

        self.puts: list[tuple[str, dict[str, object]]] = []
        self.down = down
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if server.down > 0:
                    server.down -= 1
                    self.send_response(503)
                else:
                    server.puts.append((self.path, json.loads(body)))
                    self.send_response(201)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_stow_rs_to_orthanc_and_fhir_put_with_pseudonymised_names(
    tmp_path: Path,
    results_settings: Settings,
    orthanc: Orthanc,
    feature_run: TrainedRun,
    pg_url: str,
) -> None:
    from dicomweb_client.api import DICOMwebClient

    settings = results_settings
    settings.pseudonymise_names = True
    service = Service(settings)
    try:
        series = write_series(tmp_path / "series", 3)
        orthanc.upload(series.files)
        orthanc.push_study(series.study_uid)
        study = settings.inbox / series.study_uid
        wait_ready(settings, study)
    finally:
        service.close()
    engine = get_engine(settings)
    score_ready(settings, engine, feature_run, pg_url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT study FROM scan_batches")).scalars().all()
    assert stored == [stored_names(settings).name(series.study_uid)]  # pseudonymised once

    fhir = FhirServer(down=1)
    try:
        settings.results_dicomweb_url = f"{orthanc.url}/dicom-web"
        settings.results_fhir_url = fhir.url
        first = send_results(settings, engine)
        assert (first.planned, first.sent, first.failed) == (3, 2, 1)  # the FHIR server was down
        second = send_results(settings, engine)
        assert (second.planned, second.sent, second.failed) == (0, 1, 0)
        assert send_results(settings, engine).sent == 0
    finally:
        fhir.close()

    ids = documents.uids(series.study_uid, f"model:{FEATURE_RUN}:1")
    found = DICOMwebClient(url=f"{orthanc.url}/dicom-web").search_for_instances(
        study_instance_uid=series.study_uid, search_filters={"SOPInstanceUID": ids.sop_instance}
    )
    assert len(found) == 1  # QIDO-RS finds the SR that STOW-RS stored
    [(path, resource)] = fhir.puts
    assert path == f"/fhir/DiagnosticReport/{ids.fhir_id}"
    report = DiagnosticReport.model_validate(resource)
    assert report.status == "preliminary" and report.id == ids.fhir_id


def test_instances_sent_after_the_study_was_scored_make_one_new_sr_naming_the_first(
    tmp_path: Path,
    results_settings: Settings,
    orthanc: Orthanc,
    receiver: Service,
    feature_run: TrainedRun,
    pg_url: str,
) -> None:
    """Orthanc pushes a study, it is scored and its SR stored back; then storescu sends one
    more slice of it. Before `scoring.grown` that slice was a study of its own, whose SR took
    the first one's UIDs (Orthanc kept the first) and whose DiagnosticReport the second."""
    settings = results_settings
    settings.results_dicom_destination = orthanc.destination
    rule_of = rule_in_words(feature_run.settings(pg_url, FEATURE_RUN))
    engine = get_engine(settings)
    series = write_series(tmp_path / "series", 4)
    orthanc.upload(series.files[:3])
    orthanc.push_study(series.study_uid)
    study = settings.inbox / series.study_uid
    wait_ready(settings, study)
    score_ready(settings, engine, feature_run, pg_url)
    assert send_results(settings, engine, rule_of).sent == 2
    [first] = sr_instances(orthanc, series.study_uid)

    argv = ["storescu", "-aet", "STORESCU", "-aec", settings.dicom_ae_title, "127.0.0.1"]
    late = subprocess.run([*argv, str(settings.dicom_port), str(series.files[3])], timeout=60)
    assert late.returncode == 0
    wait_ready(settings, study)
    score_ready(settings, engine, feature_run, pg_url)
    assert send_results(settings, engine, rule_of).sent == 2

    with engine.connect() as connection:
        batches = connection.execute(
            text("SELECT id, n_scored, superseded_by FROM scan_batches ORDER BY id")
        ).all()
    (old, old_scored, newer), (whole, whole_scored, none) = batches
    assert (old_scored, newer, whole_scored, none) == (3, whole, 4, None)
    srs = {
        str(i["MainDicomTags"]["SOPInstanceUID"]): i
        for i in sr_instances(orthanc, series.study_uid)
    }
    ids = documents.uids(series.study_uid, f"model:{FEATURE_RUN}:1@batch-{whole}")
    assert set(srs) == {str(first["MainDicomTags"]["SOPInstanceUID"]), ids.sop_instance}
    newest = pydicom.dcmread(
        io.BytesIO(orthanc.get(f"/instances/{srs[ids.sop_instance]['ID']}/file"))
    )
    (replaced,) = newest.PredecessorDocumentsSequence[0].ReferencedSeriesSequence
    assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in srs
    assert [p.name for p in settings.outbox.glob("*.json")] == [f"{ids.fhir_id}.json"]
    report = DiagnosticReport.model_validate_json(
        (settings.outbox / f"{ids.fhir_id}.json").read_text()
    )
    assert report.status == "preliminary"  # the one DiagnosticReport, updated to the whole study
