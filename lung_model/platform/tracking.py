"""MLflow wiring: tracking and registry URIs, and the experiment runs are logged to.

With `MLFLOW_TRACKING_URI` unset the store is SQLite under `LUNG_HOME/mlflow` (a database
store, so the model registry and aliases work) with artifacts beside it.
See https://mlflow.org/docs/latest/ml/tracking/ and
https://mlflow.org/docs/latest/ml/model-registry/
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lung_model.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured store, make sure the experiment exists, return a client."""
    import mlflow

    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(settings.experiment) is None:
        # A local store needs an explicit artifact root, or MLflow writes to ./mlruns.
        location = None if settings.mlflow_tracking_uri else settings.artifact_root()
        mlflow.create_experiment(settings.experiment, artifact_location=location)
    mlflow.set_experiment(settings.experiment)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_url(mlflow_ui_url: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI."""
    return f"{mlflow_ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
