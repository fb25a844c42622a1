"""MLflow wiring: tracking and registry URIs, the experiment runs are logged to, UI links.

With `MLFLOW_TRACKING_URI` unset the store is SQLite under `LUNG_HOME/mlflow` (a database
store, so the model registry and aliases work) with artifacts beside it.
See https://mlflow.org/docs/latest/ml/tracking/ and
https://mlflow.org/docs/latest/ml/model-registry/

The MLflow 3 UI has two views, "GenAI apps & agents" (traces, the default) and "Model
training" (runs). The experiment carries `mlflow.experimentKind = custom_model_development`
(MLflow labels it "Machine learning" and asks no "which kind?" question), and every link we
hand out names the view (`?workflowType=machine_learning`): MLflow 3.17's UI picks the view
from that parameter, else from the browser's last choice, not from the tag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lung_model.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured store, make sure the experiment exists and is marked as
    model training, return a client."""
    import mlflow

    uri = settings.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is None:
        # A local store needs an explicit artifact root, or MLflow writes to ./mlruns; also
        # when MLFLOW_TRACKING_URI names the SQLite store (as Airflow's environment does).
        location = settings.artifact_root() if uri.startswith("sqlite:") else None
        mlflow.create_experiment(
            settings.experiment,
            artifact_location=location,
            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING},
        )
    elif experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:  # created before the tag
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    mlflow.set_experiment(settings.experiment)
    return client


def run_url(mlflow_ui_url: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI, in its model-training view."""
    return (
        f"{mlflow_ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        f"?{MODEL_TRAINING_VIEW}"
    )


def experiments_url(mlflow_ui_url: str) -> str:
    """The MLflow UI's experiment list, in its model-training view."""
    return f"{mlflow_ui_url.rstrip('/')}/#/experiments?{MODEL_TRAINING_VIEW}"
