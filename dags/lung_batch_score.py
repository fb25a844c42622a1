"""lung_batch_score: score every study folder that is ready in the inbox into PostgreSQL.

wait_for_ready_study (deferrable: waits in the triggerer, holding no worker slot)
  -> claim_ready_studies -> score_study (one mapped task per study, named after it)
  -> publish (emits the `lung_predictions` asset)

The inbox and the results database are Airflow Connections (`lung_inbox`, `lung_results`).
Scoring upserts (one row per image content and model version), so a retried task adds
nothing twice. The logic is `lung_model.scoring`; this file only wires it.
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
    def claim_ready_studies() -> list[str]:
        from lung_model.pipelines.batch_score import claim_ready

        return [str(path) for path in claim_ready(lung_settings())]

    @task(queue=TENSORFLOW_QUEUE, map_index_template="{{ study }}", max_active_tis_per_dagrun=2)
    def score_study(study_dir: str) -> dict:
        from pathlib import Path

        from lung_model.pipelines.batch_score import score_claimed_study
        from lung_model.scoring.inbox import study_name

        get_current_context()["study"] = study_name(Path(study_dir))  # type: ignore[typeddict-unknown-key]
        return score_claimed_study(Path(study_dir), lung_settings())

    @task(outlets=[PREDICTIONS])
    def publish(summaries: list[dict]) -> dict:
        from lung_model.pipelines.batch_score import summarise

        return summarise(list(summaries))

    claimed = claim_ready_studies()
    wait >> claimed
    publish(score_study.expand(study_dir=claimed))


lung_batch_score()
