"""The Airflow plugin: what it adds to the UI, and where its links point."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lung_model import settings as settings_module


@pytest.fixture
def urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNG_DASHBOARD_URL", "https://review.example/")
    monkeypatch.setenv("LUNG_MLFLOW_UI_URL", "https://mlflow.example")
    settings_module.get_settings.cache_clear()
    yield
    settings_module.get_settings.cache_clear()


def test_the_plugin_registers_links_and_views(urls: None) -> None:
    import lung_ui
    from airflow import plugins_manager

    names = {link.name for link in lung_ui.LungTriagePlugin.global_operator_extra_links}
    assert names == {"MLflow run", "Review worklist"}
    views = {v["name"]: v for v in lung_ui._external_views()}
    assert views["Review dashboard"]["href"] == "https://review.example"
    # the experiment list in its model-training view, not the GenAI view MLflow opens in
    assert (
        views["MLflow"]["href"]
        == "https://mlflow.example/#/experiments?workflowType=machine_learning"
    )
    assert {v["destination"] for v in views.values()} == {"nav"}
    assert plugins_manager.AirflowPlugin in lung_ui.LungTriagePlugin.__mro__


def test_the_worklist_link_only_on_scoring_tasks(urls: None) -> None:
    import lung_ui

    link = lung_ui.ReviewWorklistLink()
    scoring = SimpleNamespace(
        dag_id="lung_batch_score", task_id="score_ready_studies", run_id="r", map_index=0
    )
    training = SimpleNamespace(dag_id="lung_retrain", task_id="train", run_id="r", map_index=-1)
    assert link.get_link(None, ti_key=scoring) == "https://review.example"
    assert link.get_link(None, ti_key=training) == ""
