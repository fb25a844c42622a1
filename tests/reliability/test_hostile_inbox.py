"""Every hostile input of issue 7 in one real inbox run (the DAG's functions: claim_ready, then
score_study per claim) against the real PostgreSQL: each file ends scored or quarantined with
a reason, no study crashes the run, hostile names are stored verbatim (parameterised SQL), and
nothing outside the inbox is read, moved or changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from reliability_helpers import (
    animated,
    bundled_dicom,
    ct_no_decoder,
    ct_slice,
    jpeg_claiming,
    png_bomb,
    png_bytes,
    random_bytes,
    snapshot,
)
from scoring_helpers import real_slices, rows
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.pipelines.batch_score import claim_ready, score_study
from lung_model.scoring.inbox import any_ready, waiting_folders
from lung_model.settings import Settings

SQL_NAMES = [
    "Robert'); DROP TABLE predictions;--.jpg",
    "\"double\" and 'single' quotes.jpg",
    "semi;colon; DELETE FROM images WHERE true;.jpg",
    "%s %(path)s $1 :name ?.jpg",  # placeholders of every driver style
    "ünïcødé 肺 ☢ ñame.jpg",
    "  leading and trailing spaces  .jpg",
    "new\nline\r\tand tab.jpg",
]
STUDY = "S'; DROP TABLE scan_batches;-- ünï"  # the study folder's name is hostile too
DEPTH = 60


def _expected(outside: Path) -> dict[str, str]:
    """relative path -> 'scored' or the start of the quarantine reason."""
    deep = "/".join(f"d{i}" for i in range(DEPTH)) + "/deep.jpg"
    return {
        "zero.jpg": "empty file",
        "header_only.jpg": "not a decodable jpeg image",
        "truncated.jpg": "corrupt jpeg image",
        "text.jpg": "not a JPEG, PNG or DICOM file",
        "random.jpg": "not a JPEG, PNG or DICOM file",
        "jpeg_named.png": "scored",
        "sixteen_bit.png": "scored",
        "rgba.png": "scored",
        "one_pixel.png": "image too small: 1x1 pixels",
        "bomb_30000.png": "decompression bomb refused",
        "bomb_30000.jpg": "decompression bomb refused",
        "animated.gif": "GIF is not a supported slice format",
        "animated.png": "animated or multi-image file",
        "ct.dcm": "scored",
        "ct_no_pixels.dcm": "DICOM object has no pixel data",
        "ct_no_decoder.dcm": "no DICOM decoder exists for transfer syntax MPEG2",
        "mr.dcm": "DICOM modality MR is not CT",
        "link_out.jpg": "symbolic link leading outside the study folder",
        "dir_out": "symbolic link leading outside the study folder",
        deep: "scored",
        **dict.fromkeys(SQL_NAMES, "scored"),
    }


def _hostile_study(folder: Path, outside: Path) -> None:
    slices = real_slices(12, start=500)
    jpeg = slices[0].read_bytes()
    folder.mkdir(parents=True)
    files = {
        "zero.jpg": b"",
        "header_only.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "text.jpg": b"Patient notes, not an image.\n",
        "random.jpg": random_bytes(4096, seed=7),
        "jpeg_named.png": slices[1].read_bytes(),
        "sixteen_bit.png": png_bytes(
            Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
        ),
        "rgba.png": png_bytes(Image.new("RGBA", (64, 64), (200, 10, 10, 128))),
        "one_pixel.png": png_bytes(Image.new("L", (1, 1), 128)),
        "bomb_30000.png": png_bomb(30_000),
        "bomb_30000.jpg": jpeg_claiming(slices[2].read_bytes(), 30_000, 30_000),
        "animated.gif": animated("GIF"),
        "animated.png": animated("PNG"),
        "ct.dcm": ct_slice(),
        "ct_no_pixels.dcm": ct_slice(PixelData=None),
        "ct_no_decoder.dcm": ct_no_decoder(),
        "mr.dcm": bundled_dicom("MR_small.dcm"),
    }
    for index, name in enumerate(SQL_NAMES):
        files[name] = slices[3 + index].read_bytes()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    deep = folder.joinpath(*[f"d{i}" for i in range(DEPTH)])
    deep.mkdir(parents=True)
    shutil.copyfile(slices[10], deep / "deep.jpg")
    (folder / "link_out.jpg").symlink_to(outside / "secret.jpg")
    (folder / "dir_out").symlink_to(outside, target_is_directory=True)
    (folder / "_READY").touch()


def test_every_hostile_input_in_one_inbox_run(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"  # another department's files, next to the inbox
    outside.mkdir()
    shutil.copyfile(real_slices(1, start=600)[0], outside / "secret.jpg")
    (outside / "notes.txt").write_text("private")
    inbox = settings.inbox
    _hostile_study(inbox / STUDY, outside)
    (inbox / "S-empty-ready").mkdir()
    (inbox / "S-empty-ready" / "_READY").touch()
    waiting = inbox / "S-not-ready"  # still being copied: no marker
    waiting.mkdir()
    shutil.copyfile(real_slices(1, start=610)[0], waiting / "slice.jpg")
    marker_folder = inbox / "S-marker-is-a-folder"  # `_READY` is a directory, not a file
    (marker_folder / "_READY").mkdir(parents=True)
    (marker_folder / "_READY" / "slice.jpg").write_bytes(b"x")
    marker_link = inbox / "S-marker-is-a-link"  # `_READY` is a link (to a file outside)
    marker_link.mkdir()
    shutil.copyfile(real_slices(1, start=611)[0], marker_link / "slice.jpg")
    (marker_link / "_READY").symlink_to(outside / "notes.txt")
    untouched = {p: snapshot(p) for p in (outside, waiting, marker_folder, marker_link)}
    model = ToyPredictor(version=f"hostile-{os.getpid()}")

    claimed = claim_ready(settings, engine)
    summaries = {s["study"]: s for s in (score_study(c, model, settings, engine) for c in claimed)}

    assert sorted(summaries) == sorted([STUDY, "S-empty-ready"])
    assert summaries["S-empty-ready"]["status"] == "failed"
    assert summaries["S-empty-ready"]["error"] == "the study folder holds no image files"
    hostile = summaries[STUDY]
    expected = _expected(outside)
    assert hostile["status"] == "done" and hostile["n_files"] == len(expected)
    stored = dict(
        rows(
            engine,
            "SELECT i.path, coalesce(i.reason, i.status) FROM images i"
            " JOIN scan_batches b ON b.id = i.batch_id WHERE b.study = :study",
            study=STUDY,  # the hostile study name, found verbatim
        )
    )
    assert sorted(stored) == sorted(expected)  # every name stored exactly as on disk
    for path, outcome in expected.items():
        assert str(stored[path]).startswith(outcome), (path, stored[path])
    archive, quarantine = settings.archive / STUDY, settings.quarantine / STUDY
    for path, outcome in expected.items():
        where = archive if outcome == "scored" else quarantine
        assert os.path.lexists(where / path), path  # the file itself, moved, not copied
    assert (quarantine / "link_out.jpg").is_symlink()
    scored = [p for p, o in expected.items() if o == "scored"]
    assert rows(
        engine,
        "SELECT count(*) FROM predictions WHERE model_version = :v",
        v=model.version,
    ) == [(len(scored),)]
    for table in ("predictions", "images", "scan_batches", "study_results", "reviews"):
        assert rows(engine, "SELECT to_regclass(:t) IS NOT NULL", t=table) == [(True,)]
    assert not any(settings.processing.iterdir())
    left = {w.name: w.why for w in waiting_folders(settings)}  # as the Operations page lists
    assert left == {
        "S-marker-is-a-folder": "_READY is a folder, not a file",
        "S-marker-is-a-link": "_READY is a symbolic link: not followed",
        "S-not-ready": "no _READY marker",
    }
    assert not any_ready(inbox, "_READY")  # the DAG's sensor does not fire on what is left
    assert {p: snapshot(p) for p in untouched} == untouched  # not read, moved or changed
    secret = (outside / "secret.jpg").read_bytes()
    assert rows(engine, "SELECT count(*) FROM images WHERE size_bytes = :n", n=len(secret)) == [
        (0,)
    ]
