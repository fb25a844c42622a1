"""The plain functions the `lung_batch_score` DAG (and anything else) calls, one per task.

`score_ready_studies` is one of the run's `LUNG_SCORE_TASKS` scoring tasks: when something
is ready it loads the champion once, then claims and scores the studies ready at its start
one at a time (the stranded claims of a killed scorer first, then the inbox, oldest first),
so the tasks of a run share them as they go, each study on its own: one that raises is
logged and skipped, its claim left for a retry, and the task fails after its last study
naming it (`StudiesFailed`). Loading the model once per task instead of
once per study, and claiming inside the scoring tasks instead of in a task of its own, is
what brings the DAG to the engine's speed: a task process starting, importing MLflow and
loading the model costs seconds; scoring a study of 40 slices, a fraction of one.
What a task returns and how it is labelled names studies as the database stores them
(pseudonyms with `LUNG_PSEUDONYMISE_NAMES`), so no study name reaches Airflow's database.
`claim_ready` claims every ready inbox study plus the claims stranded by a killed scorer;
`score_study` claims (or resumes) and scores one folder; `summarise` totals a run.
See https://airflow.apache.org/docs/apache-airflow/stable/best-practices.html
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lung_model.scoring import inbox
from lung_model.scoring.decode import limit_model_threads, split_cpus
from lung_model.scoring.engine import Scorer
from lung_model.scoring.predictor import Predictor
from lung_model.settings import Settings

log = logging.getLogger(__name__)
Summary = dict[str, Any]


def _engine(settings: Settings, engine: Engine | None) -> Engine:
    from lung_model.platform.db import get_engine

    return engine or get_engine(settings)


def _scorer(model: Predictor, settings: Settings, engine: Engine | None) -> Scorer:
    from lung_model.imaging.dicom import patient_key

    key = patient_key(settings.secrets_dir)
    return Scorer(model, _engine(settings, engine), settings, id_key=key)


def claimable(settings: Settings, engine: Engine | None = None) -> list[Path]:
    """The ready studies a scorer could take now, oldest claim first: the inbox's, and the
    claims in `processing/` that no scorer holds (stranded by a killed one)."""
    engine = _engine(settings, engine)
    found: list[Path] = []
    for folder in inbox.find_ready_studies(settings):
        if folder.parent.parent == settings.processing:
            with inbox.study_lock(engine, inbox.claim_id(folder)) as free:
                if not free:
                    continue
        found.append(folder)
    return found


def claim_ready(settings: Settings, engine: Engine | None = None) -> list[Path]:
    """Claim every ready inbox study; include stranded claims nobody holds a lock on."""
    claimed: list[Path] = []
    for folder in claimable(settings, engine):
        if folder.parent.parent == settings.processing:
            claimed.append(folder)
        elif (target := inbox.claim(folder, settings)) is not None:
            claimed.append(target)
    return claimed


def prepare_scoring_process(settings: Settings) -> None:
    """Share the CPUs between decoding and the model; call before the model is loaded.

    TensorFlow is not imported for it: a model that needs TensorFlow (the CNN) imports it
    when it loads and takes its thread count from `TF_NUM_INTRAOP_THREADS`; the feature
    model never pays the import (seconds in every scoring task and `score` command)."""
    threads = split_cpus(settings.score_workers, settings.score_model_threads)[1]
    if "tensorflow" in sys.modules:
        limit_model_threads(threads)
    else:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)


def score_study(
    study_dir: Path, model: Predictor, settings: Settings, engine: Engine | None = None
) -> dict[str, Any]:
    """Claim (or resume) one folder from `find_ready_studies`, score it, archive it."""
    return _scorer(model, settings, engine).score_claimed(Path(study_dir)).as_dict()


class StudiesFailed(RuntimeError):
    """Some studies of a scoring task raised; the others were scored. Their claims stay in
    `processing/` for the task's retry (or the next run) to score again."""

    def __init__(self, summaries: list[Summary]) -> None:
        self.summaries = summaries
        failed = [s for s in summaries if s["status"] == "error"]
        lines = "; ".join(f"{s['study']}: {s['error']}" for s in failed)
        super().__init__(f"{len(failed)} of {len(summaries)} studies failed: {lines}")


def score_ready(
    model: Predictor,
    settings: Settings,
    engine: Engine | None = None,
    on_study: Callable[[Summary], None] | None = None,
    wanted: list[Path] | None = None,
) -> list[Summary]:
    """Claim and score, one at a time with one scorer, the studies claimable when it starts
    (`wanted`, when the caller has just listed them) until each has been tried (the ones
    another scorer takes meanwhile come back `busy` or `gone`, and are not reported). Studies
    arriving meanwhile are left to the next run: a task ends, and a newly promoted champion
    is loaded, however steady the inflow. A study
    that raises is logged and summarised as `error`, its claim left in `processing/`; after
    the last one `StudiesFailed` is raised if any did. `on_study` sees each summary."""
    scorer, tried = _scorer(model, settings, engine), set[str]()
    if wanted is None:
        wanted = claimable(settings, scorer.engine)
    names = {folder.name for folder in wanted}
    summaries: list[Summary] = []
    while candidates := [f for f in inbox.find_ready_studies(settings) if f.name in names - tried]:
        folder = candidates[0]
        tried.add(folder.name)  # a study keeps its name from the inbox to its claim
        try:
            summary = scorer.score_claimed(folder).as_dict()
        except Exception as error:  # this study only: the others still get scored
            name, where = scorer.names.name(folder.name), scorer.names.folder(folder)
            log.exception("study %s failed; its claim stays for the retry", name)
            summary = {"study": name, "folder": where, "status": "error"}
            summary["error"] = f"{type(error).__name__}: {error}"
        log.info("study %s: %s", summary["study"], summary["status"])
        if summary["status"] in ("busy", "gone"):
            continue  # another scorer's: not this task's outcome
        summaries.append(summary)
        if on_study:
            on_study(summary)
    if any(summary["status"] == "error" for summary in summaries):
        raise StudiesFailed(summaries)
    return summaries


def score_ready_studies(
    settings: Settings,
    slot: int = 0,
    model_uri: str | None = None,
    on_study: Callable[[Summary], None] | None = None,
) -> list[Summary]:
    """The DAG's scoring task number `slot` (from 0): when more than `slot` studies are
    claimable, load the champion (or `model_uri`) once and `score_ready`; otherwise return
    at once, nothing loaded (a study dropped alone gets one task and the CPUs to itself)."""
    from lung_model.scoring.inference import load_model

    wanted = claimable(settings)
    if len(wanted) <= slot:
        return []
    prepare_scoring_process(settings)
    model = load_model(settings, model_uri)
    return score_ready(model, settings, on_study=on_study, wanted=wanted)


def outcome_label(summaries: list[Summary], limit: int = 250) -> str:
    """A scoring task's name in the Airflow UI: each study it scored and its outcome
    (`a: done, b: error`), cut to `limit` characters with a count."""
    if not summaries:
        return "nothing to score"
    label = ", ".join(f"{s['study']}: {s['status']}" for s in summaries)
    if len(label) <= limit:
        return label
    tail = f" ... ({len(summaries)} studies)"
    return label[: limit - len(tail)].rsplit(", ", 1)[0] + tail


def summarise(summaries: list[Summary]) -> dict[str, Any]:
    """Totals over the studies of one run (what the DAG publishes)."""
    done = [s for s in summaries if s.get("status") in ("done", "failed")]
    return {
        "studies": len(done),
        "failed": sum(s["status"] == "failed" for s in done),
        "skipped": len(summaries) - len(done),
        "files": sum(int(s["n_files"]) for s in done),
        "scored": sum(int(s["n_scored"]) for s in done),
        "quarantined": sum(int(s["n_quarantined"]) for s in done),
        "needs_review": sum(bool(s.get("result", {}).get("needs_review")) for s in done),
        "malignant": sum(s.get("result", {}).get("predicted_class") == "malignant" for s in done),
    }
