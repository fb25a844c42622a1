"""lung_feedback: clinicians' reviews (and their lesion marks) become a new DVC version of the
labelled data.

export_reviews (skipped when there is nothing new) -> emits `lung_labelled_data`, which
schedules `lung_retrain`. Runs in the `dvc` pool (one slot): DVC must not run twice at once.
The logic is `lung_model.data.feedback.export_reviews`; this file only wires it.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task
from lung_airflow import DAG_POLICY, DVC_POOL, LABELLED_DATA, START_DATE, lung_settings


@dag(
    schedule="0 2 * * *",
    start_date=START_DATE,
    params={
        "repo": Param(
            "", type="string", description="project whose data/raw gets the export; empty: this"
        ),
    },
    tags=["lung", "feedback"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_feedback() -> None:
    @task(outlets=[LABELLED_DATA], pool=DVC_POOL)
    def export_reviews(repo: str) -> dict:
        from pathlib import Path

        from airflow.sdk.exceptions import AirflowSkipException

        from lung_model.data.feedback import export_reviews
        from lung_model.settings import PROJECT_ROOT

        result = export_reviews(lung_settings(), Path(repo) if repo else PROJECT_ROOT)
        if not result["exported"]:  # no new data version: do not trigger a retrain
            raise AirflowSkipException(f"no new reviews to export ({result['skipped']})")
        return result

    export_reviews("{{ params.repo }}")


lung_feedback()
