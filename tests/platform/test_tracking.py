"""MLflow wiring: the experiment is marked as model training (new and existing ones), and the
links we hand out open MLflow's model-training view on the run's page."""

from __future__ import annotations

from pathlib import Path

import mlflow

from lung_model.platform.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING,
    configure_mlflow,
    experiments_url,
    run_url,
)
from lung_model.settings import Settings


def test_a_new_experiment_is_created_as_model_training(settings: Settings) -> None:
    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    assert experiment is not None
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(settings.home)


def test_the_sqlite_store_named_explicitly_keeps_artifacts_under_lung_home(
    settings: Settings,
) -> None:
    """Airflow's environment exports MLFLOW_TRACKING_URI as the default SQLite store; its
    artifacts stay under LUNG_HOME (so backups hold them), not in the working folder."""
    named = settings.model_copy(update={"mlflow_tracking_uri": settings.tracking_uri()})
    experiment = configure_mlflow(named).get_experiment_by_name(named.experiment)
    assert experiment is not None
    assert experiment.artifact_location.removeprefix("file://") == named.artifact_root()


def test_an_existing_experiment_gets_the_tag_once(settings: Settings) -> None:
    mlflow.set_tracking_uri(settings.tracking_uri())
    created = mlflow.create_experiment(settings.experiment, artifact_location=str(settings.home))
    assert EXPERIMENT_KIND_TAG not in mlflow.get_experiment(created).tags  # as before this fix

    client = configure_mlflow(settings)
    configure_mlflow(settings)

    experiment = client.get_experiment(created)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    assert mlflow.get_experiment_by_name(settings.experiment).experiment_id == created


def test_links_open_the_run_page_in_the_model_training_view() -> None:
    assert run_url("http://127.0.0.1:5000/", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )
    assert experiments_url("http://h:5000") == (
        "http://h:5000/#/experiments?workflowType=machine_learning"
    )


def test_the_installed_mlflow_ui_reads_these_names() -> None:
    """The view parameter and the tag are names the MLflow UI's bundle uses (read from MLflow
    3.17's JavaScript): fails when an MLflow upgrade renames them."""
    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    code = "".join(p.read_text(errors="replace") for p in bundle.glob("main.*.js"))
    assert '"workflowType"' in code and '"machine_learning"' in code
    assert '"mlflow.experimentKind"' in code and '"custom_model_development"' in code
    assert "/experiments/${e}/runs/${t}" in code  # the run page's route
