"""lung_backup: one dated backup a day of everything the system would lose with its disk.

back_up -> `LUNG_BACKUP_DIR/lung-backup-<UTC time>/` (results database dump, MLflow store
and artifacts, DVC remote, archived studies, secrets, manifest.json), keeping the newest
`LUNG_BACKUP_KEEP`. The logic is `lung_model.pipelines.daily_backup.run_backup`; this file
only wires it. Restore with `python -m lung_model restore DIR`.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from lung_airflow import DAG_POLICY, START_DATE, lung_settings


@dag(
    schedule="@daily",
    start_date=START_DATE,
    tags=["lung", "backup"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_backup() -> None:
    @task
    def back_up() -> dict:
        from lung_model.pipelines.daily_backup import run_backup

        return run_backup(lung_settings())

    back_up()


lung_backup()
