"""lung_batch_score: score every study folder that is ready in the inbox into PostgreSQL.

wait_for_ready_study (deferrable: waits in the triggerer, holding no worker slot)
  -> claim_ready -> score_claimed_study (one mapped task per study, named after it)
  -> summarise (emits the `lung_predictions` asset)

The inbox and the results database are Airflow Connections (`lung_inbox`, `lung_results`).
Scoring upserts (one row per image content and model version), so a retried task adds
nothing twice. The logic is `lung_model.scoring`; this file only wires the task functions
of `lung_model.pipelines.batch_score`, each task named after the function it calls.
"""

from __future__ import annotations

from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import dag, get_current_context, task
from lung_airflow import (
    DAG_POLICY,
    INBOX_CONN_ID,
    PREDICTIONS,
    START_DATE,
    TENSORFLOW_QUEUE,
    lung_settings,
)


@dag(
    schedule="*/10 * * * *",
    start_date=START_DATE,
    tags=["lung", "scoring"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_batch_score() -> None:
    wait = FileSensor(
        task_id="wait_for_ready_study",
        fs_conn_id=INBOX_CONN_ID,
        filepath="*/{{ conn.lung_inbox.extra_dejson.get('ready_marker', '_READY') }}",
        deferrable=True,
        poke_interval=15,
        timeout=9 * 60,
        soft_fail=True,  # nothing arrived before the next run: skipped, not failed
    )

    @task
    def claim_ready() -> list[str]:
        from lung_model.pipelines import batch_score

        return [str(path) for path in batch_score.claim_ready(lung_settings())]

    @task(queue=TENSORFLOW_QUEUE, map_index_template="{{ study }}", max_active_tis_per_dagrun=2)
    def score_claimed_study(study_dir: str) -> dict:
        from pathlib import Path

        from lung_model.pipelines import batch_score
        from lung_model.scoring.inbox import study_name

        get_current_context()["study"] = study_name(Path(study_dir))  # type: ignore[typeddict-unknown-key]
        return batch_score.score_claimed_study(Path(study_dir), lung_settings())

    @task(outlets=[PREDICTIONS])
    def summarise(summaries: list[dict]) -> dict:
        from lung_model.pipelines import batch_score

        return batch_score.summarise(list(summaries))

    claimed = claim_ready()
    wait >> claimed
    summarise(score_claimed_study.expand(study_dir=claimed))


lung_batch_score()
