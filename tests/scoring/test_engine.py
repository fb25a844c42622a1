"""The engine against the real PostgreSQL: idempotence, quarantine, hostile inputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scoring_helpers import make_study, real_slices, rows
from scoring_toys import KerasPredictor, ToyPredictor, tiny_keras_model
from sqlalchemy import Engine

from lung_model.exchange.synthetic import write_series
from lung_model.scoring.engine import FileOutcome, Scorer
from lung_model.scoring.inbox import find_ready_studies
from lung_model.settings import Settings

IMAGE_ROWS = (
    "SELECT i.path, i.sha256, i.status, i.reason, i.width, i.height, p.p_normal, p.p_benign,"
    " p.p_malignant, p.predicted_class, p.model_name, p.model_version, p.data_version"
    " FROM images i JOIN scan_batches b ON b.id = i.batch_id"
    " LEFT JOIN predictions p ON p.image_sha256 = i.sha256 AND p.model_version = :version"
    " WHERE b.source_path = :source ORDER BY i.path"
)


def test_scoring_twice_in_place_gives_the_same_rows(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    model = KerasPredictor(tiny_keras_model(), version="keras-twice")
    study = make_study(tmp_path / "sites", "S-twice", real_slices(10))
    (study / "notes.txt").write_text("not a slice")
    source = str(study.resolve())

    first = Scorer(model, engine, settings).score_in_place(study)
    before = rows(engine, IMAGE_ROWS, source=source, version=model.version)
    counts = rows(
        engine, "SELECT count(*) FROM predictions WHERE model_version = :v", v="keras-twice"
    )
    second = Scorer(model, engine, settings).score_in_place(study)

    assert (first.status, first.n_files, first.n_scored, first.n_quarantined) == ("done", 11, 10, 1)
    assert first.n_predicted == 10 and second.n_predicted == 0  # nothing predicted twice
    assert rows(engine, IMAGE_ROWS, source=source, version=model.version) == before
    assert (
        rows(engine, "SELECT count(*) FROM predictions WHERE model_version = :v", v="keras-twice")
        == counts
    )
    assert rows(engine, "SELECT count(*) FROM scan_batches WHERE source_path = :s", s=source) == [
        (1,)
    ]
    assert rows(
        engine,
        "SELECT count(*) FROM study_results r JOIN scan_batches b ON b.id = r.batch_id"
        " WHERE b.source_path = :s",
        s=source,
    ) == [(1,)]
    scored = [r for r in before if r[2] == "scored"]
    assert all(r[10:] == ("tiny-keras", "keras-twice", "toy-data.dir") for r in scored)
    assert all(abs(sum(r[6:9]) - 1) < 1e-5 for r in scored)  # type: ignore[arg-type]
    assert [r[3] for r in before if r[2] == "quarantined"] == ["not a JPEG, PNG or DICOM file"]
    assert sorted(os.listdir(study)) == sorted(
        ["_READY", "notes.txt", "series1"] + [f"slice_{i:03d}.jpg" for i in range(0, 10, 2)]
    )


def test_inbox_study_is_archived_with_quarantine_reasons_in_the_database(
    settings: Settings, engine: Engine, toy: ToyPredictor
) -> None:
    study = make_study(settings.inbox, "S-inbox", real_slices(6))
    (study / "empty.dcm").write_bytes(b"")
    (study / "series1" / "cut.jpg").write_bytes((study / "slice_000.jpg").read_bytes()[:3000])
    outcomes: list[FileOutcome] = []

    [folder] = find_ready_studies(settings)
    summary = Scorer(toy, engine, settings, on_file=outcomes.append).score_claimed(folder)

    assert (summary.status, summary.n_scored, summary.n_quarantined) == ("done", 6, 2)
    assert not list(settings.inbox.iterdir()) and not list(settings.processing.iterdir())
    archived = settings.archive / "S-inbox"
    assert sorted(p.name for p in archived.rglob("*.jpg")) == [
        f"slice_{i:03d}.jpg" for i in range(6)
    ]
    assert (settings.quarantine / "S-inbox" / "empty.dcm").exists()
    assert (settings.quarantine / "S-inbox" / "series1" / "cut.jpg").exists()
    reasons = dict(
        rows(
            engine,
            "SELECT i.path, i.reason FROM images i JOIN scan_batches b ON b.id = i.batch_id"
            " WHERE b.study = 'S-inbox' AND i.status = 'quarantined'",
        )
    )
    assert reasons["empty.dcm"] == "empty file"
    assert str(reasons["series1/cut.jpg"]).startswith("corrupt jpeg image")
    [(status, archive_path, n_files)] = rows(
        engine, "SELECT status, archive_path, n_files FROM scan_batches WHERE study = 'S-inbox'"
    )
    assert (status, archive_path, n_files) == ("done", str(archived), 8)
    where = {o.relpath: o.location for o in outcomes}
    assert where["slice_000.jpg"] == archived / "slice_000.jpg"
    assert where["empty.dcm"] == settings.quarantine / "S-inbox" / "empty.dcm"


def test_hostile_files_end_quarantined_and_nothing_is_read_through_links(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path
) -> None:
    from PIL import Image

    secret = tmp_path / "outside" / "secret.jpg"
    secret.parent.mkdir()
    shutil.copyfile(real_slices(1, start=40)[0], secret)
    study = make_study(settings.inbox, "S-hostile", real_slices(2))
    (study / "link_out.jpg").symlink_to(secret)
    (study / "link_in.jpg").symlink_to("slice_000.jpg")  # relative: survives the claim
    (study / "dir_link").symlink_to(secret.parent, target_is_directory=True)
    (study / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    os.mkfifo(study / "pipe.jpg")
    (study / "zero").write_bytes(b"")
    (study / "noise.png").write_bytes(os.urandom(5000))
    (study / "a png named.dcm").write_bytes((lambda b: b)(_png_bytes()))
    (study / "ünïcødé name; rm -rf ~.jpg").write_bytes((study / "slice_000.jpg").read_bytes())
    latin1 = os.fsdecode(b"caf\xe9\nline.jpg")  # not UTF-8, with a newline
    (study / latin1).write_bytes((study / "slice_000.jpg").read_bytes())
    wide = Image.new("L", (4097, 4097))
    wide.save(study / "huge.png")
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(
        study / "deep.png"
    )
    Image.new("RGBA", (64, 64), (200, 10, 10, 128)).save(study / "alpha.png")

    summary = Scorer(toy, engine, settings).score_claimed(find_ready_studies(settings)[0])

    status = dict(
        rows(
            engine,
            "SELECT i.path, coalesce(i.reason, i.status) FROM images i"
            " JOIN scan_batches b ON b.id = i.batch_id WHERE b.study = 'S-hostile'",
        )
    )
    assert status["link_out.jpg"] == "symbolic link leading outside the study folder: not followed"
    assert status["dir_link"].startswith("symbolic link")
    assert status["broken.jpg"] == "broken symbolic link"
    assert status["pipe.jpg"] == "not a regular file"
    assert status["zero"] == "empty file"
    assert status["noise.png"] == "not a JPEG, PNG or DICOM file"
    assert status["huge.png"] == "image too large: 4097x4097 pixels"
    for name in (
        "link_in.jpg",
        "a png named.dcm",
        "ünïcødé name; rm -rf ~.jpg",
        "caf\\xe9\nline.jpg",
        "deep.png",
        "alpha.png",
    ):
        assert status[name] == "scored", name
    assert summary.n_files == len(status) == 15
    secret_sha = rows(engine, "SELECT count(*) FROM images WHERE path LIKE '%secret%'")
    assert secret_sha == [(0,)] and secret.exists()  # never read, never moved
    assert (settings.quarantine / "S-hostile" / "link_out.jpg").is_symlink()
    assert not list(settings.processing.iterdir())


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (48, 40), 90).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_study_folder_that_is_a_symlink_is_quarantined_unread(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path
) -> None:
    elsewhere = make_study(tmp_path, "elsewhere", real_slices(2))
    (settings.inbox / "S-linked").symlink_to(elsewhere, target_is_directory=True)

    [summary] = [
        Scorer(toy, engine, settings).score_claimed(f) for f in find_ready_studies(settings)
    ]

    assert summary.status == "failed" and "symbolic link" in str(summary.error)
    assert (settings.quarantine / "S-linked").is_symlink()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["_READY", "series1", "slice_000.jpg"]
    assert rows(engine, "SELECT status FROM scan_batches WHERE study = 'S-linked'") == [("failed",)]


def test_a_study_with_nothing_scorable_fails_with_a_reason(
    settings: Settings, engine: Engine, toy: ToyPredictor
) -> None:
    study = settings.inbox / "S-empty"
    study.mkdir()
    (study / "readme.txt").write_text("x")
    (study / "_READY").touch()

    summary = Scorer(toy, engine, settings).score_claimed(study)

    assert (summary.status, summary.n_quarantined) == ("failed", 1)
    assert rows(
        engine, "SELECT count(*) FROM study_results WHERE batch_id = :b", b=summary.batch_id
    ) == [(0,)]
    assert (settings.archive / "S-empty" / "_READY").exists()


def test_a_study_folder_with_only_the_marker_fails_once_saying_it_holds_no_files(
    settings: Settings, engine: Engine, toy: ToyPredictor
) -> None:
    study = settings.inbox / "S-marker-only"
    study.mkdir()
    (study / "_READY").touch()

    [summary] = [
        Scorer(toy, engine, settings).score_claimed(f) for f in find_ready_studies(settings)
    ]

    assert (summary.status, summary.n_files) == ("failed", 0)
    assert summary.error == "the study folder holds no image files"
    assert rows(
        engine, "SELECT status, error FROM scan_batches WHERE id = :b", b=summary.batch_id
    ) == [("failed", "the study folder holds no image files")]
    assert (settings.archive / "S-marker-only" / "_READY").exists()
    assert find_ready_studies(settings) == []  # out of the inbox: never claimed again


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batches_of_any_size_score_each_distinct_image_once(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path, batch_size: int
) -> None:
    settings.score_batch_size = batch_size
    slices = real_slices(4)
    study = make_study(tmp_path, f"S-dup{batch_size}", slices + slices[:2])  # 2 exact copies

    summary = Scorer(toy, engine, settings, workers=2).score_in_place(study)

    assert (summary.n_scored, summary.n_predicted) == (6, 4)
    assert rows(
        engine, "SELECT count(*) FROM predictions WHERE model_version = :v", v=toy.version
    ) == [(4,)]


@pytest.mark.parametrize(
    ("own", "configured", "study_malignant"),
    [(0.0, None, True), (1.1, None, False), (1.1, 0.0, True)],
)
def test_the_models_own_threshold_decides_slices_and_studies(
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    own: float,
    configured: float | None,
    study_malignant: bool,
) -> None:
    """Slices follow the model's decision rule; LUNG_MALIGNANT_THRESHOLD, when set, is the
    site's rule for studies."""
    model = ToyPredictor(version=f"toy-rule-{own}-{configured}", malignant_threshold=own)
    study = make_study(tmp_path / "sites", "S-rule", real_slices(4))
    settings = settings.model_copy(update={"malignant_threshold": configured})

    summary = Scorer(model, engine, settings).score_in_place(study)

    classes = rows(
        engine, "SELECT predicted_class FROM predictions WHERE model_version = :v", v=model.version
    )
    slice_malignant = [c == "malignant" for (c,) in classes]
    assert len(slice_malignant) == 4 and all(slice_malignant) is (own == 0.0)
    assert any(slice_malignant) is (own == 0.0)
    assert (summary.result["predicted_class"] == "malignant") is study_malignant
    assert summary.result["n_malignant_slices"] == (4 if study_malignant else 0)


def test_a_folder_of_two_patients_dicom_slices_gets_no_verdict(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path
) -> None:
    """A study folder dropped with two patients' slices in it: each slice is scored and
    names its patient's keyed hash, but no verdict mixes them; one patient's gets one."""
    series = write_series(tmp_path / "series", real_slices(4, start=40), seed="two patients")
    for file in series.files[2:]:
        ds = pydicom.dcmread(file)
        ds.PatientID = "OTHER-PATIENT"
        ds.save_as(file)
    mixed, single = settings.inbox / "S-two-patients", settings.inbox / "S-one-patient"
    for folder, files in ((mixed, series.files), (single, series.files[:2])):
        folder.mkdir()
        for file in files:
            shutil.copyfile(file, folder / file.name)
        (folder / "_READY").touch()
    scorer = Scorer(toy, engine, settings, id_key=b"k" * 32)

    two = scorer.score_claimed(mixed)
    one = scorer.score_claimed(single)

    assert (two.status, two.n_scored) == ("failed", 4)
    assert two.error == "the study's DICOM slices name 2 patients: no verdict across patients"
    assert rows(
        engine, "SELECT count(*) FROM study_results WHERE batch_id = :b", b=two.batch_id
    ) == [(0,)]
    assert (one.status, one.n_scored) == ("done", 2)
