"""lung_batch_score: score every study folder that is ready in the inbox into PostgreSQL.

wait_for_ready_study (deferrable: waits in the triggerer, holding no worker slot)
  -> claim_ready -> score_claimed_study (one mapped task per study, named after it)
  -> summarise (emits the `lung_predictions` asset)

Scheduled `@continuous` with one active run: a run waits for a ready study, scores what is
ready, and the next run starts waiting as soon as it ends, so something always watches the
inbox (the sensor looks every 5 s; a study is claimed within seconds, or, when it arrives
while a run is scoring, as soon as that run ends).

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

IDLE_SECONDS = 30


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
        poke_interval=5,
        timeout=timedelta(days=1),
        soft_fail=True,  # a quiet day: skipped, not failed, and the next run waits on
    )

    @task
    def claim_ready() -> list[str]:
        import time

        from lung_model.pipelines import batch_score

        claimed = batch_score.claim_ready_for_tasks(lung_settings())
        if not claimed:  # the sensor saw a study another scorer (e.g. the CLI) took first:
            time.sleep(IDLE_SECONDS)  # do not spin runs
        return claimed

    @task(queue=TENSORFLOW_QUEUE, map_index_template="{{ study }}", max_active_tis_per_dagrun=2)
    def score_claimed_study(study_dir: str) -> dict:
        from pathlib import Path

        from lung_model.pipelines import batch_score
        from lung_model.scoring.inbox import study_name

        get_current_context()["study"] = study_name(Path(study_dir))  # type: ignore[typeddict-unknown-key]
        return batch_score.score_claimed_study(Path(study_dir), lung_settings())

    @task(outlets=[PREDICTIONS])
    def summarise(summaries: Sequence[dict]) -> dict:
        from lung_model.pipelines import batch_score

        # One slice reads every mapped result at once. Iterating the lazy sequence instead
        # reads them one by one until a read fails, and each run logged that last read as
        # "[error] XCom not found ... offset=<n>".
        return batch_score.summarise(list(summaries[:]))

    claimed = claim_ready()
    wait >> claimed
    summarise(score_claimed_study.expand(study_dir=claimed))


lung_batch_score()
