"""The lung triage system inside the Airflow UI: links to the review dashboard and MLflow.

- Navigation entries "Review dashboard" and "MLflow" (Airflow 3 external views; MLflow opens
  in its model-training view).
- On every task instance, an "MLflow run" button when the task recorded one (the training
  and registration tasks push `mlflow_run_url`), and on `lung_batch_score` tasks a
  "Review worklist" button opening the dashboard.
The URLs are the LUNG_DASHBOARD_URL and LUNG_MLFLOW_UI_URL settings.
See https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/plugins.html
and https://airflow.apache.org/docs/apache-airflow/stable/howto/define-extra-link.html
"""

from __future__ import annotations

import json
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

MLFLOW_RUN_XCOM_KEY = "mlflow_run_url"


def _urls() -> tuple[str, str]:
    from lung_model.settings import get_settings

    settings = get_settings()
    return settings.dashboard_url.rstrip("/"), settings.mlflow_ui_url.rstrip("/")


def _xcom_value(ti_key: Any, key: str) -> Any:
    """An XCom of the task instance, read from the metadata database (API server side)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.scalar(
            XComModel.get_many(
                key=key,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        )
    try:
        return json.loads(value) if isinstance(value, str | bytes) else value
    except ValueError:
        return value


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run a task logged to (empty, so disabled, when it logged none)."""

    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        value = _xcom_value(ti_key, MLFLOW_RUN_XCOM_KEY)
        return value if isinstance(value, str) and value.startswith("http") else ""


class ReviewWorklistLink(BaseOperatorLink):
    """The dashboard's worklist, on the tasks that fill it."""

    name = "Review worklist"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return _urls()[0] if ti_key.dag_id == "lung_batch_score" else ""


def _external_views() -> list[dict[str, str]]:
    from lung_model.platform.tracking import experiments_url

    dashboard, mlflow = _urls()
    return [
        {"name": "Review dashboard", "href": dashboard, "destination": "nav"},
        {"name": "MLflow", "href": experiments_url(mlflow), "destination": "nav"},
    ]


class LungTriagePlugin(AirflowPlugin):
    name = "lung_triage"
    global_operator_extra_links = [MlflowRunLink(), ReviewWorklistLink()]
    external_views = _external_views()
