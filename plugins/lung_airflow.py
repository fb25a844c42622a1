"""What the lung DAGs share: default task arguments, settings wired to Airflow Connections,
and the failure callback that raises an alert.

Airflow puts the plugins folder on `sys.path`, so DAG files import this module by name. At
the top it imports only Airflow's task SDK, the standard library and the names `lung_model`
defines for Airflow (light modules: no TensorFlow, MLflow or DVC); everything else of
`lung_model` is imported inside the functions, when a task runs.
See https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/modules_management.html
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, Connection, get_current_context

from lung_model.platform.airflow import (
    DVC_POOL,
    INBOX_CONN_ID,
    RESULTS_CONN_ID,
    TENSORFLOW_QUEUE,
)
from lung_model.platform.registry import champion_uri
from lung_model.settings import get_settings

if TYPE_CHECKING:
    from lung_model.settings import Settings

__all__ = ["DVC_POOL", "INBOX_CONN_ID", "RESULTS_CONN_ID", "TENSORFLOW_QUEUE"]

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "lung-ml",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


def lung_settings() -> Settings:
    """The project settings, with the results database taken from the `lung_results`
    Airflow Connection when one is defined (as in every deployment we ship)."""
    from lung_model.platform.airflow import url_from_connection

    settings = get_settings()
    try:
        conn = Connection.get(RESULTS_CONN_ID)
    except Exception:  # no such connection: keep DATABASE_URL or the embedded server
        return settings
    url = url_from_connection(
        conn.host, conn.login, conn.password, conn.schema, conn.port, conn.extra_dejson
    )
    return settings.model_copy(update={"database_url": url})


def push_mlflow_run_link(result: dict[str, Any]) -> None:
    """Record the MLflow run of a task's result so the UI shows an "MLflow run" button."""
    run_id, experiment_id = result.get("run_id"), result.get("experiment_id")
    if not (run_id and experiment_id):
        return
    from lung_model.platform.tracking import run_url

    url = run_url(get_settings().mlflow_ui_url, experiment_id, run_id)
    get_current_context()["ti"].xcom_push(key="mlflow_run_url", value=url)


def alert_on_failure(context: Any) -> None:
    """Failure callback: log the failure and POST it to LUNG_ALERT_WEBHOOK when set."""
    from lung_model.platform.alerts import alert

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None)
    run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?")
    where = f"{dag_id}.{task_id}" if task_id else str(dag_id)
    alert(
        f"Airflow: {where} failed in run {run_id}",
        {
            "dag_id": dag_id,
            "task_id": task_id,
            "run_id": run_id,
            "error": str(context.get("exception") or context.get("reason") or ""),
        },
        get_settings(),
    )


# The @dag arguments every lung DAG shares: one run at a time, no backfill of missed
# intervals, retries with backoff and an alert when a task fails for good.
DAG_POLICY: dict[str, Any] = {
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {**DEFAULT_ARGS, "on_failure_callback": alert_on_failure},
}
START_DATE = datetime(2026, 1, 1)

# Assets shared by the DAGs: who produces them, who is scheduled on them.
LABELLED_DATA = Asset(name="lung_labelled_data", uri="file:///lung/data/raw.dvc")
PREDICTIONS = Asset(name="lung_predictions")  # the predictions and study_results tables
CHAMPION = Asset(name="lung_champion_model", uri=champion_uri(get_settings().model_name))
