"""lung_monitoring: a daily check of prediction drift, acquisition drift (studies unlike the
scans their model learned from), review backlog and failures.

check over the run's data interval -> stored in `monitoring_checks`; a breached threshold
fails the task, and its failure callback alerts (log always, LUNG_ALERT_WEBHOOK when set).
The logic is `lung_model.pipelines.monitoring.run_checks`; this file only wires it.
"""

from __future__ import annotations

from airflow.sdk import CronDataIntervalTimetable, dag, task
from lung_airflow import DAG_POLICY, START_DATE, lung_settings


@dag(
    schedule=CronDataIntervalTimetable("0 6 * * *", timezone="UTC"),  # window: the past day
    start_date=START_DATE,
    tags=["lung", "monitoring"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_monitoring() -> None:
    @task
    def run_checks(data_interval_start=None, data_interval_end=None) -> dict:  # noqa: ANN001
        from airflow.sdk.exceptions import AirflowFailException

        from lung_model.pipelines import monitoring

        report = monitoring.run_checks(data_interval_start, data_interval_end, lung_settings())
        if report["breaches"]:  # not transient: fail now (no retries) and alert
            raise AirflowFailException("; ".join(report["breaches"]))
        return report

    run_checks()


lung_monitoring()
