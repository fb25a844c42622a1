"""The disk of LUNG_HOME full: a small tmpfs mounted as LUNG_HOME, first out of inodes (no
folder can be made), then out of space (no file can be written). The DAG's functions fail
with "No space left on device" (the task fails, Airflow retries it), no input is lost or
half-moved, and once space is back the next run scores every slice exactly once.
Mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped and says why."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import scored_once, snapshot
from scoring_helpers import make_study, real_slices
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.pipelines.batch_score import claim_ready, score_study
from lung_model.settings import Settings


@pytest.fixture
def small_disk(settings: Settings) -> Iterator[Path]:
    home = settings.home
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=200", "tmpfs", str(home)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs as LUNG_HOME here: {mounted.stderr.strip()}")
    try:
        settings.ensure_dirs()
        yield home
    finally:
        subprocess.run(["umount", "--lazy", str(home)], check=True)


def _fill(folder: Path) -> list[Path]:
    """Use every free block, then every free inode; return what to delete to free them."""
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    made = [filler]
    try:
        while True:
            made.append(folder / f"inode-{len(made)}")
            made[-1].touch()
    except OSError as error:
        assert error.errno == errno.ENOSPC
        made.pop()
    return made


def test_a_full_disk_fails_clearly_loses_nothing_and_the_next_run_scores_once(
    small_disk: Path, settings: Settings, engine: Engine
) -> None:
    study = make_study(settings.inbox, "S-full", real_slices(7, start=800))
    (study / "bad.jpg").write_bytes(b"not a slice")
    before = snapshot(settings.inbox)
    used = _fill(small_disk)
    model = ToyPredictor(version="disk-full")

    with pytest.raises(OSError, match="No space left on device"):
        claim_ready(settings, engine)  # no inode for the claim's folder
    assert snapshot(settings.inbox) == before

    for inode in used[1:]:
        inode.unlink()  # inodes back, still no free block
    with pytest.raises(OSError, match="No space left on device"):
        for claimed in claim_ready(settings, engine):
            score_study(claimed, model, settings, engine)  # the patient-ID key cannot be written
    [stranded] = list(settings.processing.glob("*/*"))  # claimed, kept whole for the rerun
    files = {k: v for k, v in snapshot(stranded).items() if v[0][0] == "file"}
    assert files == {k[len("S-full/") :]: v for k, v in before.items() if v[0][0] == "file"}
    assert list(settings.secrets_dir.iterdir()) == []  # no half-made key left behind

    used[0].unlink()  # space is back
    summaries = [score_study(c, model, settings, engine) for c in claim_ready(settings, engine)]

    assert [(s["status"], s["n_scored"], s["n_quarantined"]) for s in summaries] == [("done", 7, 1)]
    scored_once(engine, settings.home, model.version, {"S-full": 8})
