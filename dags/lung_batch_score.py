"""lung_batch_score: score every study folder that is ready in the inbox into PostgreSQL.

wait_for_ready_study (deferrable: waits in the triggerer, holding no worker slot, and the
  triggerer ends it when a study is ready: no worker process resumes it)
  -> score_ready_studies (LUNG_SCORE_TASKS mapped tasks at once; each loads the model once,
     then claims and scores the studies ready at its start one at a time, so they share
     them as they go; each is named after the studies it scored and their outcomes; a study
     that raises does not stop the others, the task fails after its last one, and its retry
     takes up that study's claim again)
  -> summarise (emits the `lung_predictions` asset; waits a little when nothing was scored)

Scheduled `@continuous` with one active run: a run waits for a ready study, scores what is
ready, and the next run starts waiting as soon as it ends, so something always watches the
inbox (the sensor looks every 2 s; a study arriving while a run scores is taken up by the
next one).

The inbox and the results database are Airflow Connections (`lung_inbox`, `lung_results`).
Scoring upserts (one row per image content and model version), so a retried task adds
nothing twice. The logic is `lung_model.scoring`; this file only wires the task functions
of `lung_model.pipelines.batch_score`, each task named after the function it calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task
from lung_airflow import (
    DAG_POLICY,
    INBOX_CONN_ID,
    PREDICTIONS,
    START_DATE,
    TENSORFLOW_QUEUE,
    lung_settings,
)

from lung_model.pipelines.ready_sensor import ReadyStudySensor
from lung_model.settings import get_settings

IDLE_SECONDS = 30
SCORE_TASKS = get_settings().score_tasks  # LUNG_SCORE_TASKS, read when the file is parsed


@dag(
    schedule="@continuous",  # with DAG_POLICY's max_active_runs=1: one run waits at a time
    start_date=START_DATE,
    tags=["lung", "scoring"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_batch_score() -> None:
    wait = ReadyStudySensor(  # the scorer's own rule: a `_READY` folder or link is no marker
        task_id="wait_for_ready_study",
        fs_conn_id=INBOX_CONN_ID,
        deferrable=True,
        poke_interval=2,
        timeout=timedelta(days=1),
        soft_fail=True,  # a quiet day: skipped, not failed, and the next run waits on
    )

    @task(
        queue=TENSORFLOW_QUEUE,
        map_index_template="{{ studies }}",
        max_active_tis_per_dagrun=SCORE_TASKS,
    )
    def score_ready_studies(slot: int) -> list[dict]:
        from lung_model.pipelines import batch_score

        context = get_current_context()
        scored: list[dict] = []

        def label(summary: dict | None = None) -> None:
            scored.extend([summary] if summary else [])
            context["studies"] = batch_score.outcome_label(scored)  # type: ignore[typeddict-unknown-key]

        label()
        return batch_score.score_ready_studies(lung_settings(), slot, on_study=label)

    @task(outlets=[PREDICTIONS])
    def summarise(summaries: Sequence[list[dict]]) -> dict:
        import time

        from lung_model.pipelines import batch_score

        # One slice reads every mapped result at once. Iterating the lazy sequence instead
        # reads them one by one until a read fails, and each run logged that last read as
        # "[error] XCom not found ... offset=<n>".
        totals = batch_score.summarise([s for task in summaries[:] for s in task])
        if not totals["studies"]:  # the sensor saw a study another scorer (the CLI) took
            time.sleep(IDLE_SECONDS)  # first: do not spin runs
        return totals

    scored = score_ready_studies.expand(slot=list(range(SCORE_TASKS)))
    wait >> scored
    summarise(scored)


lung_batch_score()
