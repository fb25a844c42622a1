"""A study that grows after it was scored: the instances that arrive late start a new folder
of the same name, which is scored with the earlier ones and supersedes the earlier batch."""

from __future__ import annotations

import uuid
from pathlib import Path

import pydicom
from scoring_helpers import make_study, real_slices, rows
from scoring_toys import ToyPredictor
from sqlalchemy import Engine, text

from lung_model.exchange import reports
from lung_model.exchange.documents import structured_report, uids
from lung_model.exchange.synthetic import write_series
from lung_model.platform.names import StoredNames
from lung_model.scoring.engine import Scorer
from lung_model.settings import Settings


def _received(settings: Settings, files: list[Path], series_uid: str | None = None) -> Path:
    """The study folder the receiver writes: each file named by its SOP Instance UID under
    the Study Instance UID, then marked ready; the files in the series `series_uid` when
    given (more slices of it, sent later)."""
    folder = None
    for file in files:
        ds = pydicom.dcmread(file)
        ds.SeriesInstanceUID = series_uid or ds.SeriesInstanceUID
        folder = settings.inbox / str(ds.StudyInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm")
    assert folder is not None
    (folder / settings.ready_marker).touch()
    return folder


def test_instances_arriving_after_the_study_was_scored_rescore_it_whole(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path
) -> None:
    slices = real_slices(6, start=200)
    first = write_series(tmp_path / "first", slices[:4], seed=f"grown-{uuid.uuid4()}")
    study = first.study_uid  # the receiver names a study's folder by its UID
    more = write_series(tmp_path / "more", slices[4:], seed=f"more-{uuid.uuid4()}")
    for file in more.files:  # the same study, numbered on
        ds = pydicom.dcmread(file)
        ds.StudyInstanceUID, ds.InstanceNumber = study, ds.InstanceNumber + 4
        ds.save_as(file)
    scorer = Scorer(toy, engine, settings)

    earlier = scorer.score_claimed(_received(settings, first.files))
    whole = scorer.score_claimed(_received(settings, more.files, first.series_uid))

    assert (earlier.status, earlier.n_files) == ("done", 4)
    assert (whole.status, whole.n_files, whole.n_scored, whole.supersedes) == (
        "done",
        6,
        6,
        [earlier.batch_id],
    )
    assert whole.n_predicted == 2  # the four slices scored before are not predicted again
    batches = "SELECT id, superseded_by FROM scan_batches WHERE study = :s ORDER BY id"
    assert rows(engine, batches, s=study) == [
        (earlier.batch_id, whole.batch_id),
        (whole.batch_id, None),
    ]
    on_worklist = "SELECT batch_id FROM worklist_entries WHERE study = :s"
    assert rows(engine, on_worklist, s=study) == [(whole.batch_id,)]
    assert len(list((settings.archive / study).glob("*.dcm"))) == 4  # the earlier archive stays

    # the earlier batch's report is never sent; the whole study's is a new SR version
    assert reports.candidate(engine, earlier.batch_id, f"model:{toy.name}:{toy.version}")
    report = f"model:{toy.name}:{toy.version}@batch-{whole.batch_id}"
    planned = reports.candidate(engine, whole.batch_id, report)
    assert planned.preliminary == report
    sent = [c.batch_id for c in reports.candidates(engine, [("fhir-outbox", "/o")])]
    assert whole.batch_id in sent and earlier.batch_id not in sent
    before, after = uids(study, f"model:{toy.name}:{toy.version}"), uids(study, report)
    assert before.sop_instance != after.sop_instance  # the PACS keeps both, the newer whole
    assert before.fhir_id == after.fhir_id  # the EHR's report is updated in place

    # the earlier SR had reached the PACS: the whole study's SR says it replaces it
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO result_deliveries (batch_id, report, report_status, channel,"
                " destination, study_instance_uid, object_uid, status, sent_at) VALUES (:b, :r,"
                " 'preliminary', 'dicom', 'PACS@127.0.0.1:4242', :s, :o, 'sent', now())"
            ),
            {"b": earlier.batch_id, "r": f"model:{toy.name}:{toy.version}", "s": study,
             "o": before.sop_instance},
        )  # fmt: skip
    whole_report = reports.load_report(engine, planned)
    assert whole_report.replaces == [f"model:{toy.name}:{toy.version}"]
    evidence = reports.read_evidence(
        whole_report.archive_path, StoredNames(), reports.scored_dicom_paths(engine, whole.batch_id)
    )
    sr = structured_report(whole_report, evidence)
    assert sr.SOPInstanceUID == after.sop_instance
    (replaced,) = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence
    assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == before.sop_instance

    # a folder of the same name holding no DICOM of the study neither joins nor supersedes
    again = scorer.score_claimed(make_study(settings.inbox, study, []))
    assert again.status == "failed" and again.supersedes == []
    assert rows(engine, on_worklist, s=study) == [(whole.batch_id,)]


def test_a_pseudonymised_study_that_grows_is_found_by_its_stored_name(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path
) -> None:
    settings.pseudonymise_names = True  # the database holds the folder's pseudonym
    slices = real_slices(3, start=240)
    first = write_series(tmp_path / "first", slices, seed=f"pseudo-{uuid.uuid4()}")
    scorer = Scorer(toy, engine, settings)
    earlier = scorer.score_claimed(_received(settings, first.files[:2]))
    whole = scorer.score_claimed(_received(settings, first.files[2:]))
    assert earlier.study == whole.study != first.study_uid
    assert (whole.status, whole.n_scored, whole.supersedes) == ("done", 3, [earlier.batch_id])


def test_slices_without_a_study_uid_dropped_again_under_a_used_name_stay_their_own_batch(
    settings: Settings, engine: Engine, toy: ToyPredictor
) -> None:
    slices = real_slices(3, start=220)
    study = f"jpeg-study-{uuid.uuid4().hex[:8]}"
    scorer = Scorer(toy, engine, settings)
    first = scorer.score_claimed(make_study(settings.inbox, study, slices[:2]))
    second = scorer.score_claimed(make_study(settings.inbox, study, slices[2:]))
    assert (first.n_files, second.n_files, second.supersedes) == (2, 1, [])
    assert len(rows(engine, "SELECT 1 FROM worklist_entries WHERE study = :s", s=study)) == 2
