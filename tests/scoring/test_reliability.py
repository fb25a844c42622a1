"""Scorers killed mid-batch and scorers racing on one inbox: every slice exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
from scoring_helpers import make_study, real_slices, rows
from sqlalchemy import Engine

from lung_model.settings import Settings

WORKER = Path(__file__).with_name("scorer_process.py")


def _scorer(settings: Settings, version: str, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "LUNG_HOME": str(settings.home),
        "DATABASE_URL": str(settings.database_url),
        "LUNG_SCORE_BATCH_SIZE": str(settings.score_batch_size),
        "LUNG_SCORE_PROCESSES_MIN_FILES": str(settings.score_processes_min_files),
        "PYTHONPATH": str(WORKER.parent),
    }
    return subprocess.Popen(
        [sys.executable, str(WORKER), version, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _exactly_once(
    engine: Engine, settings: Settings, version: str, studies: dict[str, int]
) -> None:
    """Each study: one batch, done, archived; each file one row; each image one prediction."""
    batches = rows(
        engine,
        "SELECT b.study, b.status, count(i.id), count(DISTINCT i.path), count(p.id)"
        " FROM scan_batches b JOIN images i ON i.batch_id = b.id"
        " LEFT JOIN predictions p ON p.image_sha256 = i.sha256 AND p.model_version = :v"
        " WHERE b.model_version = :v GROUP BY b.id ORDER BY b.study",
        v=version,
    )
    assert [(s, st, n, d) for s, st, n, d, _ in batches] == [
        (name, "done", n, n) for name, n in sorted(studies.items())
    ]
    assert (
        rows(
            engine,
            "SELECT image_sha256 FROM predictions WHERE model_version = :v"
            " GROUP BY image_sha256 HAVING count(*) > 1",
            v=version,
        )
        == []
    )
    assert not list(settings.processing.iterdir()) and not list(settings.inbox.iterdir())
    assert sorted(p.name for p in settings.archive.iterdir()) == sorted(studies)


def test_sigkill_mid_batch_then_rerun_scores_every_slice_exactly_once(
    settings: Settings, engine: Engine
) -> None:
    settings.score_batch_size = 4
    version = f"kill-{uuid.uuid4().hex[:6]}"
    study = make_study(settings.inbox, "S-kill", real_slices(18))
    (study / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")  # quarantined in batch 1

    killed = _scorer(settings, version, "--kill-on-call", "3")  # dies predicting batch 3
    killed.communicate(timeout=120)

    assert killed.returncode == -9
    [stranded] = list(settings.processing.glob("*/*"))
    assert stranded.name == "S-kill"
    assert rows(engine, "SELECT count(*) FROM predictions WHERE model_version = :v", v=version) == [
        (7,)
    ]  # batches 1 (3 + bad.jpg) and 2
    assert rows(engine, "SELECT status FROM scan_batches WHERE model_version = :v", v=version) == [
        ("processing",)
    ]

    rerun = _scorer(settings, version)
    out, err = rerun.communicate(timeout=120)

    assert rerun.returncode == 0, err
    [summary] = [json.loads(line) for line in out.splitlines()]
    assert (summary["n_scored"], summary["n_quarantined"], summary["n_predicted"]) == (18, 1, 11)
    _exactly_once(engine, settings, version, {"S-kill": 19})
    assert (settings.quarantine / "S-kill" / "bad.jpg").exists()
    assert not stranded.exists()


def test_a_scorer_killed_while_its_worker_processes_decode_leaves_none_behind(
    settings: Settings, engine: Engine
) -> None:
    settings.score_batch_size, settings.score_processes_min_files = 4, 1
    version = f"kill-workers-{uuid.uuid4().hex[:6]}"
    make_study(settings.inbox, "S-kill-workers", real_slices(18))

    killed = _scorer(settings, version, "--processes", "--kill-on-call", "3", "--delay", "0.2")
    seen: set[psutil.Process] = set()
    while killed.poll() is None:  # its decoding worker processes
        with contextlib.suppress(psutil.Error):
            seen.update(psutil.Process(killed.pid).children(recursive=True))
        time.sleep(0.02)
    _, still = psutil.wait_procs(seen, timeout=15)

    assert killed.returncode == -9 and len(seen) == 2  # LUNG_SCORE_WORKERS: 60% of 2 CPUs
    assert still == []  # nobody left to end them but their own watch on the scorer
    rerun = _scorer(settings, version, "--processes")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    _exactly_once(engine, settings, version, {"S-kill-workers": 18})


def test_two_scorers_on_one_inbox_take_each_study_once(settings: Settings, engine: Engine) -> None:
    settings.score_batch_size = 2
    version = f"race-{uuid.uuid4().hex[:6]}"
    slices = real_slices(36)
    studies = {f"S-race-{i}": 6 for i in range(6)}
    for index, name in enumerate(studies):
        make_study(settings.inbox, name, slices[index * 6 : index * 6 + 6])

    scorers = [_scorer(settings, version, "--delay", "0.05") for _ in range(2)]
    outputs = [scorer.communicate(timeout=120) for scorer in scorers]

    assert [s.returncode for s in scorers] == [0, 0], [err for _, err in outputs]
    summaries = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    done = sorted(s["study"] for s in summaries if s["status"] == "done")
    assert done == sorted(studies)  # each study scored by exactly one of them
    _exactly_once(engine, settings, version, studies)
