"""The MLflow model registry (a real SQLite store): registering a run's model makes it the
challenger; aliases and the newest version are read back, None when there is nothing."""

from __future__ import annotations

import uuid

import pytest
from tiny_models import TrainedRun

from lung_model.platform.registry import (
    CHALLENGER,
    CHAMPION,
    champion_version,
    latest_version,
    register,
    version_for_alias,
)
from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def mine(trained_run: TrainedRun, pg_url: str) -> Settings:
    return trained_run.settings(pg_url, f"lung-test-registry-{uuid.uuid4().hex[:8]}")


def test_register_gives_the_new_version_the_challenger_alias(
    trained_run: TrainedRun, mine: Settings
) -> None:
    client = configure_mlflow(mine)

    first = register(trained_run.run_id, mine)
    assert str(version_for_alias(client, mine.model_name, CHALLENGER).version) == first
    second = register(trained_run.run_id, mine)

    assert int(second) == int(first) + 1
    assert str(version_for_alias(client, mine.model_name, CHALLENGER).version) == second
    assert version_for_alias(client, mine.model_name, CHAMPION) is None  # never by itself
    assert champion_version(client, mine.model_name) is None
    registered = client.get_model_version(mine.model_name, second)
    assert registered.run_id == trained_run.run_id
    run_tags = client.get_run(trained_run.run_id).data.tags
    assert registered.tags["data_version"] == run_tags["data_version"]
    assert registered.tags["git_commit"] == run_tags["git_commit"]


def test_an_unknown_alias_or_model_has_no_version(trained_run: TrainedRun, mine: Settings) -> None:
    client = configure_mlflow(mine)

    assert version_for_alias(client, f"no-such-model-{uuid.uuid4().hex[:8]}", CHAMPION) is None
    register(trained_run.run_id, mine)
    assert version_for_alias(client, mine.model_name, "no-such-alias") is None
    assert version_for_alias(client, mine.model_name, CHAMPION) is None


def test_latest_version_is_the_newest_registered(trained_run: TrainedRun, mine: Settings) -> None:
    client = configure_mlflow(mine)
    with pytest.raises(LookupError, match="no registered versions"):
        latest_version(client, mine.model_name)

    versions = [register(trained_run.run_id, mine) for _ in range(3)]
    client.set_registered_model_alias(mine.model_name, CHAMPION, versions[0])

    assert latest_version(client, mine.model_name) == versions[-1]
    assert champion_version(client, mine.model_name) == versions[0]
