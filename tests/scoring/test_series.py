"""One reconstruction a study: a study holding the same slices as a sharp and a smooth
series scores the sharp one only, and says so for the other's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from scipy import ndimage
from scoring_helpers import real_slices, rows
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.exchange.synthetic import write_series
from lung_model.scoring.engine import Scorer
from lung_model.scoring.files import list_inputs
from lung_model.scoring.series import one_reconstruction
from lung_model.settings import Settings


def _smoothed(sources: list[Path], folder: Path) -> list[Path]:
    """The slices as a soft kernel would give them (PNG, so nothing else changes)."""
    folder.mkdir()
    out = []
    for source in sources:
        gray = np.asarray(Image.open(source).convert("L"), dtype=np.float32)
        target = folder / f"{source.stem}.png"
        Image.fromarray(np.round(ndimage.gaussian_filter(gray, 1.5)).astype(np.uint8)).save(target)
        out.append(target)
    return out


def _into_study(files: list[Path], study: Path, study_uid: str, number: int, kernel: str) -> None:
    study.mkdir(parents=True, exist_ok=True)
    for file in files:
        ds = pydicom.dcmread(file)
        ds.StudyInstanceUID = study_uid
        ds.SeriesNumber, ds.SeriesDescription, ds.ConvolutionKernel = (
            number,
            f"Chest {kernel}",
            kernel,
        )
        ds.save_as(study / f"s{number}-{file.name}")


def test_the_sharp_reconstruction_is_scored_and_the_smooth_one_refused_saying_so(
    settings: Settings, engine: Engine, toy: ToyPredictor, tmp_path: Path
) -> None:
    slices = real_slices(4, start=60)
    sharp = write_series(tmp_path / "sharp", slices, seed="sharp")
    smooth = write_series(tmp_path / "smooth", _smoothed(slices, tmp_path / "png"), seed="smooth")
    scout = write_series(tmp_path / "scout", slices[:1], seed="scout")
    scout_ds = pydicom.dcmread(scout.files[0])
    scout_ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout_ds.save_as(scout.files[0])
    study = settings.inbox / "S-two-kernels"
    _into_study(smooth.files, study, sharp.study_uid, 2, "B30f")  # listed first
    _into_study(sharp.files, study, sharp.study_uid, 3, "B70f")
    _into_study(scout.files, study, sharp.study_uid, 1, "T20f")
    (study / "_READY").touch()

    summary = Scorer(toy, engine, settings).score_claimed(study)

    assert (summary.status, summary.n_scored, summary.n_quarantined) == ("done", 4, 5)
    found = dict(
        rows(
            engine,
            "SELECT path, coalesce(reason, '') FROM images WHERE batch_id = :b",
            b=summary.batch_id,
        )
    )
    assert all(found[p] == "" for p in found if p.startswith("s3-"))
    assert all(
        found[p].startswith("another reconstruction of this study (series 2 'Chest B30f'")
        and "only series 3 'Chest B70f' (kernel B70f) is scored" in found[p]
        for p in found
        if p.startswith("s2-")
    )
    assert found["s1-0001.dcm"] == "DICOM CT localizer (scout) image: axial CT slices only"
    assert (settings.quarantine / "S-two-kernels" / "s2-0001.dcm").exists()


def test_series_that_share_a_number_are_told_apart_by_their_uid(tmp_path: Path) -> None:
    slices = real_slices(3, start=60)
    study = tmp_path / "S-numbered-alike"
    sharp = write_series(study, slices, seed="alike-sharp")  # both numbered 1, undescribed
    smooth = write_series(tmp_path / "smooth", _smoothed(slices, tmp_path / "png"), seed="alike")
    for file in smooth.files:
        file.rename(study / f"soft-{file.name}")

    reasons = {f.relpath: f.refusal for f in one_reconstruction(list_inputs(study))}

    assert all(reasons[f.name] is None for f in sharp.files)
    assert all(
        reasons[f"soft-{f.name}"]
        == f"another reconstruction of this study (series 1 (UID ...{smooth.series_uid[-8:]})):"
        f" only series 1 (UID ...{sharp.series_uid[-8:]}) is scored, the sharpest, as one"
        " study's verdict must read one series"
        for f in smooth.files
    )
