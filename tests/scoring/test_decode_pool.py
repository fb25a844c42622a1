"""Models that prepare slices in worker processes (the feature model: its features hold the
GIL): the same inputs as threads, and a worker that dies mid-study fails the study with a
clear error, keeps its claim, and the next run scores every slice exactly once."""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path

import numpy as np
import psutil
import pytest
from scoring_helpers import make_study, real_slices, rows
from scoring_toys import ProcessPrepare, ProcessToyPredictor
from sqlalchemy import Engine
from tiny_models import FEATURE_RUN, TrainedRun

from lung_model.scoring.decode import DecodeWorkerDied, decode_file
from lung_model.scoring.decode_pool import DecodePool
from lung_model.scoring.engine import Scorer
from lung_model.scoring.files import InputFile
from lung_model.scoring.inference import LoadedModel
from lung_model.settings import Settings


def test_worker_processes_prepare_what_threads_prepare(
    feature_run: TrainedRun, pg_url: str, tmp_path: Path
) -> None:
    model = LoadedModel.load(feature_run.settings(pg_url, FEATURE_RUN), f"models:/{FEATURE_RUN}/1")
    assert model.process_prepare is not None
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    files = [InputFile(p.name, p, p) for p in [*real_slices(5), bad]]
    shape = model.input_shape

    def work(prepare: object) -> partial[object]:
        return partial(decode_file, prepare=prepare, input_shape=shape, id_key=None, reduce_to=None)

    threads = DecodePool(work(model.prepare), 2)
    processes = DecodePool(work(model.prepare), 2, work(model.process_prepare))
    try:
        in_threads = [threads.submit(f).result() for f in files]
        in_workers = [processes.submit(f).result() for f in files]
        assert processes.in_processes and psutil.Process().children(recursive=True)
    finally:
        threads.close()
        processes.close()
    assert [d.row for d in in_workers] == [d.row for d in in_threads]
    assert in_workers[-1].x is None and "jpeg" in (in_workers[-1].row.reason or "")
    for ours, theirs in zip(in_workers[:-1], in_threads[:-1], strict=True):
        np.testing.assert_array_equal(ours.x, theirs.x)


def test_a_killed_worker_fails_the_study_and_the_rerun_scores_each_slice_once(
    settings: Settings, engine: Engine
) -> None:
    settings.score_batch_size, settings.score_processes_min_files = 4, 1
    version = f"worker-{uuid.uuid4().hex[:6]}"
    make_study(settings.inbox, "S-worker", real_slices(14))
    killing = ProcessToyPredictor(version, process_prepare=ProcessPrepare(kill_on_call=4))

    with pytest.raises(DecodeWorkerDied) as died:
        Scorer(killing, engine, settings).score_claimed(settings.inbox / "S-worker")
    assert "next run resumes it" in str(died.value)
    [stranded] = list(settings.processing.glob("*/*"))
    assert stranded.name == "S-worker"

    summary = Scorer(ProcessToyPredictor(version), engine, settings).score_claimed(stranded)
    assert (summary.status, summary.n_scored) == ("done", 14)
    counts = (
        "SELECT count(*), count(DISTINCT image_sha256) FROM predictions WHERE model_version = :v"
    )
    assert rows(engine, counts, v=version) == [(14, 14)]
    assert not list(settings.processing.glob("*/*"))
    assert [p.name for p in settings.archive.iterdir()] == ["S-worker"]
