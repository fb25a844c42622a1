"""The MLflow model registry: register a run's model as the new challenger, read aliases.

Aliases, not stages: `challenger` is the newest registered version, `champion` the one that
scores. See https://mlflow.org/docs/latest/ml/model-registry/ (aliases) and
https://mlflow.org/docs/latest/api_reference/python_api/mlflow.client.html
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_ARTIFACT = "model"  # where a training run logs its model
SPLIT_ARTIFACT = "reports/split.json"  # and the split it was trained and tested on
CHAMPION = "champion"
CHALLENGER = "challenger"
log = logging.getLogger(__name__)


def register(run_id: str, settings: Settings) -> str:
    """Register the run's logged model under the model name; give it `challenger`."""
    import mlflow

    client = configure_mlflow(settings)
    run = client.get_run(run_id)
    version = mlflow.register_model(
        run.data.tags.get("model_uri", f"runs:/{run_id}/{MODEL_ARTIFACT}"),
        settings.model_name,
        tags={
            "data_version": run.data.tags.get("data_version", ""),
            "git_commit": run.data.tags.get("git_commit", ""),
        },
    )
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version.version)
    log.info("registered %s version %s as %s", settings.model_name, version.version, CHALLENGER)
    return str(version.version)


def champion_uri(name: str) -> str:
    """The registry URI of the model's current champion."""
    return f"models:/{name}@{CHAMPION}"


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version number holding `champion`, or None when there is none."""
    current = version_for_alias(client, name, CHAMPION)
    return str(current.version) if current else None


def current_champion(settings: Settings) -> str | None:
    """The champion's version number under the configured model name, or None."""
    return champion_version(configure_mlflow(settings), settings.model_name)


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version holding `alias`, or None when no version has it (or no model exists)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def latest_version(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise LookupError(f"no registered versions of {name}")
    return str(max(int(v.version) for v in versions))
