"""Reviews become a new DVC data version: in a throwaway DVC repository, on the real
PostgreSQL, with real slices."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from lung_model import settings as settings_module
from lung_model.data import dvc, feedback
from lung_model.platform import db
from lung_model.platform.names import StoredNames, stored_names
from lung_model.settings import PROJECT_ROOT, Settings

RAW = PROJECT_ROOT / "data" / "raw"


def run_dvc(repo: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, check=True, capture_output=True)


def labelled_folder(repo: Path) -> Path:
    """`repo/data/raw` holding two real slices and their MANIFEST.csv."""
    data = repo / "data" / "raw"
    rows = list(csv.DictReader((RAW / "MANIFEST.csv").open()))[:2]
    for row in rows:
        (data / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RAW / row["path"], data / row["path"])
    with (data / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "sha256"])
        writer.writeheader()
        writer.writerows(rows)
    return repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A DVC repository (with a local remote) tracking that folder."""
    repo = labelled_folder(tmp_path / "repo")
    run_dvc(repo, "init", "--no-scm", "-q")
    run_dvc(repo, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    run_dvc(repo, "add", "-q", "data/raw")
    return repo


@pytest.fixture
def fresh(tmp_path: Path, empty_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("LUNG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", empty_pg_url)
    settings_module.get_settings.cache_clear()
    current = settings_module.get_settings()
    current.ensure_dirs()
    yield current
    settings_module.get_settings.cache_clear()


def scored_study(settings: Settings, study: str, names: StoredNames | None = None) -> int:
    """An archived study of three real slices, scored 'benign' by model version 1; its names
    stored as `names` stores them (as dropped by default)."""
    names = names or StoredNames()
    folder = settings.archive / study
    folder.mkdir(parents=True)
    files = sorted((RAW / "Malignant cases").glob("*.jpg"))[:3]
    with db.get_engine(settings).begin() as connection:
        batch = connection.execute(
            text("""INSERT INTO scan_batches (study, source_path, status, model_name, model_version)
                    VALUES (:s, :p, 'done', 'm', '1') RETURNING id"""),
            {"s": names.name(study), "p": names.folder(settings.inbox / study)},
        ).scalar_one()
        for file in files:
            shutil.copyfile(file, folder / file.name)
            connection.execute(
                text("""INSERT INTO images (batch_id, path, sha256, status)
                        VALUES (:b, :p, :sha, 'scored')"""),
                {"b": batch, "p": names.name(file.name), "sha": dvc.sha256_of(file)},
            )
        connection.execute(
            text("""INSERT INTO study_results (batch_id, model_name, model_version, data_version,
                    n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices,
                    predicted_class, needs_review)
                    VALUES (:b, 'm', '1', 'd', 3, 0.3, 0.2, 0, 'benign', true)"""),
            {"b": batch},
        )
    return int(batch)


def review(settings: Settings, batch: int, decision: str, label: str | None) -> None:
    with db.get_engine(settings).begin() as connection:
        connection.execute(
            text("""INSERT INTO reviews (batch_id, reviewer, decision, corrected_label,
                    model_name, model_version) VALUES (:b, 'dr', :d, :l, 'm', '1')"""),
            {"b": batch, "d": decision, "l": label},
        )


def manifest_labels(repo: Path) -> dict[str, str]:
    rows = csv.DictReader((repo / "data" / "raw" / "MANIFEST.csv").open())
    return {r["path"]: r["label"] for r in rows if "/reviewed/" in r["path"]}


def test_reviews_become_a_new_data_version_once(fresh: Settings, repo: Path) -> None:
    before = dvc.data_version(repo / "data" / "raw.dvc")
    batch = scored_study(fresh, "CT-0042")
    assert feedback.export_reviews(fresh, repo)["exported"] == 0  # nothing reviewed yet

    review(fresh, batch, "correct", "malignant")
    result = feedback.export_reviews(fresh, repo)
    assert result["exported"] == 1 and result["images"] == 3
    assert result["data_version"] != before
    assert result["data_version"] == dvc.data_version(repo / "data" / "raw.dvc")
    labels = manifest_labels(repo)
    assert len(labels) == 3 and set(labels.values()) == {"malignant"}
    assert all(p.startswith(f"Malignant cases/reviewed/{batch}-CT-0042/") for p in labels)
    pushed = {p.name for p in (repo.parent / "remote").rglob("*") if p.is_file()}
    assert result["data_version"][2:] in pushed  # the remote holds the new version

    again = feedback.export_reviews(fresh, repo)
    assert again["exported"] == 0 and again["data_version"] == result["data_version"]

    review(fresh, batch, "confirm", None)  # a second opinion: the model's 'benign' stands
    moved = feedback.export_reviews(fresh, repo)
    assert moved["exported"] == 1 and moved["data_version"] != result["data_version"]
    labels = manifest_labels(repo)
    assert set(labels.values()) == {"benign"} and len(labels) == 3
    assert not (
        repo / "data" / "raw" / "Malignant cases" / "reviewed" / f"{batch}-CT-0042"
    ).exists()
    with db.get_engine(fresh).connect() as connection:
        exported = connection.execute(text("SELECT label FROM feedback_exports ORDER BY 1")).all()
    assert [row[0] for row in exported] == ["benign", "malignant"]


def test_files_changed_since_scoring_are_not_exported(fresh: Settings, tmp_path: Path) -> None:
    repo = labelled_folder(tmp_path / "plain")  # nothing is exported: DVC is never called
    batch = scored_study(fresh, "CT-7")
    for file in (fresh.archive / "CT-7").iterdir():
        file.write_bytes(b"tampered")
    review(fresh, batch, "correct", "normal")
    result = feedback.export_reviews(fresh, repo)
    assert result["exported"] == 0 and result["skipped"]


def test_a_study_whose_names_are_pseudonyms_is_exported_under_them(
    fresh: Settings, repo: Path
) -> None:
    """With LUNG_PSEUDONYMISE_NAMES the files are found in the archive by their real names
    and exported under their pseudonyms (with their suffix, which the dataset reads by)."""
    fresh.pseudonymise_names = True
    names = stored_names(fresh)
    batch = scored_study(fresh, "Doe^Jane", names)
    review(fresh, batch, "correct", "malignant")

    result = feedback.export_reviews(fresh, repo)

    assert result["exported"] == 1 and result["images"] == 3
    folder = f"Malignant cases/reviewed/{batch}-{names.name('Doe^Jane')}/"
    exported = {f"{folder}{names.name(p.name)}.jpg" for p in (fresh.archive / "Doe^Jane").iterdir()}
    assert set(manifest_labels(repo)) == exported


def mark(settings: Settings, batch: int, index: int, kind: str, x=None, y=None, radius=None):
    """A mark by 'dr' on the study's `index`-th slice (by path)."""
    with db.get_engine(settings).begin() as connection:
        image = connection.execute(
            text("SELECT id FROM images WHERE batch_id = :b ORDER BY path OFFSET :i LIMIT 1"),
            {"b": batch, "i": index},
        ).scalar_one()
        connection.execute(
            text("""INSERT INTO review_marks (image_id, reviewer, kind, x, y, radius,
                    model_name, model_version) VALUES (:i, 'dr', :k, :x, :y, :r, 'm', '1')"""),
            {"i": image, "k": kind, "x": x, "y": y, "r": radius},
        )


def annotation_rows(repo: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((repo / "data" / "raw" / "ANNOTATIONS.csv").open()))


def test_marks_are_exported_beside_the_images_once_and_again_when_they_change(
    fresh: Settings, repo: Path
) -> None:
    """Issue 22 item 2: a confirmed study's counting marks become ANNOTATIONS.csv rows of the
    new data version (the dataset README says how to read them); exporting again adds nothing;
    a new mark or a withdrawal exports the study again; a new label moves its marks too."""
    from lung_model.data import lesion_marks
    from lung_model.data.audit import audit, inspect
    from lung_model.data.grouping import pseudo_patients

    batch = scored_study(fresh, "CT-0077")
    mark(fresh, batch, 0, "lesion", 200, 180)
    mark(fresh, batch, 0, "lesion", 210.5, 190, 14)  # a correction: this one counts
    mark(fresh, batch, 1, "no_lesion")
    mark(fresh, batch, 2, "lesion", 50, 60)
    mark(fresh, batch, 2, "withdrawn")  # taken back: no row
    assert feedback.export_reviews(fresh, repo)["exported"] == 0  # marked, not yet reviewed

    review(fresh, batch, "correct", "malignant")
    first = feedback.export_reviews(fresh, repo)
    assert (first["exported"], first["images"], first["marks"]) == (1, 3, 2)
    rows = annotation_rows(repo)
    folder = f"Malignant cases/reviewed/{batch}-CT-0077/"
    assert [(r["path"].startswith(folder), r["label"], r["kind"]) for r in rows] == [
        (True, "malignant", "lesion"),
        (True, "malignant", "no_lesion"),
    ]
    assert (rows[0]["x"], rows[0]["y"], rows[0]["radius"]) == ("210.5", "190.0", "14.0")
    assert rows[1]["x"] == rows[1]["radius"] == ""
    assert rows[0]["reviewer"].startswith("rv-") and "dr" not in rows[0]["reviewer"][3:5]
    assert rows[0]["reviewer"] == feedback.reviewer_pseudonym(fresh, "dr")
    assert set(manifest_labels(repo)) >= {r["path"] for r in rows}
    readme = (repo / "data" / "raw" / "README.md").read_text()
    assert readme.count(feedback.README_SECTION) == 1 and "| radius |" in readme

    data = repo / "data" / "raw"
    inventory = inspect(data)
    report = audit(inventory)
    assert [e for e in report["errors"] if "has no images" not in e] == []  # two classes only
    assert report["lesion_marks"] == {"lesion": 1, "no_lesion": 1}
    groups = pseudo_patients(inventory)
    assert len({groups[p] for p in manifest_labels(repo)}) == 1  # one study, one patient

    again = feedback.export_reviews(fresh, repo)
    assert again["exported"] == 0 and again["data_version"] == first["data_version"]
    assert annotation_rows(repo) == rows

    mark(fresh, batch, 1, "lesion", 300, 300)  # the reviewer changed their mind
    remarked = feedback.export_reviews(fresh, repo)
    assert (remarked["exported"], remarked["marks"]) == (1, 2)
    assert remarked["data_version"] != first["data_version"]
    assert [r["kind"] for r in annotation_rows(repo)] == ["lesion", "lesion"]
    assert len(manifest_labels(repo)) == 3  # the images are listed once

    review(fresh, batch, "correct", "benign")
    moved = feedback.export_reviews(fresh, repo)
    assert moved["exported"] == 1
    assert {(r["path"].split("/")[0], r["label"]) for r in annotation_rows(repo)} == {
        ("Bengin cases", "benign")
    }
    assert readme.count(feedback.README_SECTION) == 1

    broken = data / lesion_marks.FILE  # the audit refuses a mark of an image that is not there
    broken.write_text(broken.read_text().replace(f"{batch}-CT-0077", "nowhere", 1))
    assert any("no such image" in e for e in audit(inspect(data))["errors"])


def test_one_export_writes_the_marks_of_every_study_it_exports_and_keeps_the_others(
    fresh: Settings, repo: Path
) -> None:
    """ANNOTATIONS.csv is written once per export run, with the marks of each study exported;
    a later run that exports one study again keeps the other's rows as they were."""
    first, second = scored_study(fresh, "CT-A"), scored_study(fresh, "CT-B")
    mark(fresh, first, 0, "lesion", 20, 30)
    mark(fresh, second, 1, "no_lesion")
    review(fresh, first, "confirm", None)  # the model said benign
    review(fresh, second, "correct", "malignant")

    both = feedback.export_reviews(fresh, repo)

    assert (both["exported"], both["marks"]) == (2, 2)
    rows = annotation_rows(repo)
    assert [(r["path"].split("/")[2], r["kind"]) for r in rows] == [
        (f"{first}-CT-A", "lesion"),
        (f"{second}-CT-B", "no_lesion"),
    ]
    mark(fresh, second, 2, "lesion", 40, 50)
    again = feedback.export_reviews(fresh, repo)
    assert (again["exported"], again["marks"]) == (1, 2)
    after = annotation_rows(repo)
    assert after[0] == rows[0]  # the first study's row, untouched
    assert [(r["path"].split("/")[2], r["kind"]) for r in after[1:]] == [
        (f"{second}-CT-B", "no_lesion"),
        (f"{second}-CT-B", "lesion"),
    ]
