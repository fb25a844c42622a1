"""Finding a slice on disk for the study view, and never outside the study's folders."""

from __future__ import annotations

from pathlib import Path

from lung_model.review.studies import slice_file, thumbnail
from lung_model.settings import PROJECT_ROOT

SLICE = PROJECT_ROOT / "data" / "raw" / "Normal cases" / "Normal case (1).jpg"


def test_archive_path_first_then_archive_then_source(settings, tmp_path: Path) -> None:
    moved = tmp_path / "archive-elsewhere" / "s1~abc"
    (moved / "sub").mkdir(parents=True)
    (moved / "sub" / "a.jpg").write_bytes(SLICE.read_bytes())
    study = {
        "study": "s1",
        "source_path": str(tmp_path / "inbox" / "s1"),
        "archive_path": str(moved),
    }
    assert slice_file(settings, study, "sub/a.jpg") == (moved / "sub" / "a.jpg").resolve()
    in_place = tmp_path / "in-place"
    in_place.mkdir()
    (in_place / "b.jpg").write_bytes(SLICE.read_bytes())
    study = {"study": "s2", "source_path": str(in_place), "archive_path": None}
    assert slice_file(settings, study, "b.jpg") == (in_place / "b.jpg").resolve()
    assert thumbnail(in_place / "b.jpg", 64).shape[0] <= 64


def test_paths_leading_out_are_refused(settings, tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(SLICE.read_bytes())
    (folder / "link.jpg").symlink_to(secret)
    study = {"study": "s3", "source_path": str(folder), "archive_path": None}
    assert slice_file(settings, study, "../secret.jpg") is None
    assert slice_file(settings, study, str(secret)) is None
    assert slice_file(settings, study, "link.jpg") is None
    assert slice_file(settings, study, "missing.jpg") is None
