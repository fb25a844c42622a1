"""lung_results_out: the scored studies' reports back to the hospital, exactly once each.

send_results -> a DICOM SR (TID 1500) into the study on the PACS (C-STORE to
LUNG_RESULTS_DICOM_DESTINATION, STOW-RS to LUNG_RESULTS_DICOMWEB_URL) and a FHIR
DiagnosticReport (LUNG_HOME/outbox/, PUT to LUNG_RESULTS_FHIR_URL) for every new report
version: the model's preliminary result, then the final one after a clinician's review.
Runs when new predictions land and every 5 minutes (reviews, retries of a destination that
was down). The logic is `lung_model.pipelines.results_out.run_results_out`.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from lung_airflow import DAG_POLICY, PREDICTIONS, START_DATE, lung_settings


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/5 * * * *", timezone="UTC"), assets=PREDICTIONS
    ),
    start_date=START_DATE,
    tags=["lung", "hospital"],
    doc_md=__doc__,
    **DAG_POLICY,
)
def lung_results_out() -> None:
    @task
    def send_results() -> dict:
        from lung_model.pipelines.results_out import run_results_out

        return run_results_out(lung_settings())

    send_results()


lung_results_out()
