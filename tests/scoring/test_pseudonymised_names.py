"""`LUNG_PSEUDONYMISE_NAMES`: a site that names study folders and files after patients gets
no name into the database (every text column of every table searched), while the disk keeps
the real names, a resumed or repeated run adds nothing twice, and a study is still found by
the name a reviewer knows: in the worklist, with `python -m lung_model pseudonym`, on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scoring_helpers import real_slices, rows
from scoring_toys import ToyPredictor
from sqlalchemy import Engine, text

from lung_model.cli.main import main
from lung_model.pipelines.batch_score import claim_ready, score_study
from lung_model.platform.names import PREFIX, stored_names
from lung_model.review.studies import get_study, slice_file
from lung_model.review.worklist import WorklistFilter, worklist
from lung_model.scoring.engine import Scorer
from lung_model.settings import Settings

PATIENT = "Zorander"  # in every folder and file name below
STUDY = f"{PATIENT}^Kahlan 1971-02-03"
SLICES = [f"{PATIENT} series/{PATIENT}_{i}.jpg" for i in range(4)]
NOTES = f"{PATIENT} notes.jpg"  # not an image: quarantined under its real name


def _named_study(folder: Path) -> Path:
    for relative, source in zip(SLICES, real_slices(4, start=800), strict=True):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / relative)
    (folder / NOTES).write_text(f"{PATIENT}, Kahlan: notes")
    (folder / "_READY").touch()
    return folder


def _text_columns_naming(engine: Engine, word: str) -> list[str]:
    """Every `table.column` of text (or JSON, or arrays) holding `word` in some row."""
    with engine.connect() as connection:
        columns = connection.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type IN"
                " ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY')"
            )
        ).all()
        found = []
        for table, column in columns:  # identifiers from the catalog, the word bound
            query = f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS text) ILIKE :w'  # noqa: S608
            if connection.execute(text(query), {"w": f"%{word}%"}).scalar():
                found.append(f"{table}.{column}")
        return found


class FailsOnTheSecondBatch(ToyPredictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.calls == 1:
            self.calls += 1
            raise RuntimeError("the scorer died mid-study")
        return super().predict(batch)


def test_no_name_reaches_the_database_and_a_rerun_adds_nothing(
    settings: Settings, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.pseudonymise_names, settings.score_batch_size = True, 2
    names = stored_names(settings)
    _named_study(settings.inbox / STUDY)
    model = FailsOnTheSecondBatch(version=f"names-{tmp_path.name[-20:]}")

    [first] = claim_ready(settings, engine)
    with pytest.raises(RuntimeError):
        score_study(first, model, settings, engine)  # stranded after its first batch
    [again] = claim_ready(settings)  # the stranded claim, as a scoring task takes it up
    passed = names.folder(again)  # how its summary names it in Airflow's database
    assert PATIENT not in passed and names.locate(passed) == first
    summary = score_study(first, model, settings, engine)

    assert (summary["status"], summary["n_files"], summary["n_scored"]) == ("done", 5, 4)
    assert summary["n_predicted"] == 3  # the first batch (notes, 1 slice) kept: none twice
    [(batch_id, study)] = rows(
        engine, "SELECT id, study FROM scan_batches WHERE model_version = :v", v=model.version
    )
    assert study == names.name(STUDY) and study.startswith(PREFIX)
    stored = dict(rows(engine, "SELECT path, status FROM images WHERE batch_id = :b", b=batch_id))
    assert stored == {names.name(p): "scored" for p in SLICES} | {names.name(NOTES): "quarantined"}
    archived, quarantined = settings.archive / STUDY, settings.quarantine / STUDY
    assert all((archived / p).is_file() for p in SLICES) and (quarantined / NOTES).is_file()

    in_place = _named_study(tmp_path / f"{PATIENT} in place")
    scorer = Scorer(ToyPredictor(version=model.version), engine, settings)
    once = scorer.score_in_place(in_place)
    counts = rows(engine, "SELECT count(*) FROM images")
    again = scorer.score_in_place(in_place)
    assert (once.status, again.status, again.n_predicted) == ("done", "done", 0)
    assert rows(engine, "SELECT count(*) FROM images") == counts  # same rows, nothing added

    assert _text_columns_naming(engine, PATIENT) == []
    assert _text_columns_naming(engine, "Kahlan") == []

    assert main(["pseudonym", STUDY]) == 0  # what a reviewer who knows the name runs
    assert capsys.readouterr().out.split() == [study]
    assert worklist(engine, WorklistFilter(study=STUDY), names).rows[0]["batch_id"] == batch_id
    row = get_study(engine, batch_id)
    assert row and slice_file(settings, row, names.name(SLICES[0])) == (archived / SLICES[0])
