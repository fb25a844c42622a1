"""Shared fixtures: a fresh database on the real PostgreSQL, and isolated settings.

`TEST_POSTGRES_URL` names the server (default: the local one on 127.0.0.1:5432); each test
session creates its own database there and drops it afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_admin import SERVER_URL
from pg_admin import admin as _admin
from tiny_models import (
    FEATURE_RUN,
    FIXTURE_DATA,
    TrainedRun,
    store_settings,
    train_and_register,
    train_feature_model,
    use_home,
)

from lung_model import settings as settings_module
from lung_model.settings import Settings


def fresh_database_url() -> Iterator[str]:
    name = f"lung_test_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield SERVER_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of its own on the real PostgreSQL server, for the whole session."""
    yield from fresh_database_url()


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A brand-new, unmigrated database for one test."""
    yield from fresh_database_url()


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings isolated in tmp_path (LUNG_HOME, MLflow store) on the session database."""
    yield use_home(tmp_path / "home", pg_url, monkeypatch)
    settings_module.get_settings.cache_clear()


@pytest.fixture(scope="session")
def trained_run(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A one-epoch 32 px network trained on the fixture slices (seconds); register it under
    as many model names as a test needs."""
    home = tmp_path_factory.mktemp("trained-run")
    settings = store_settings(home, pg_url).model_copy(update={"model_name": "lung-test-trained"})
    run_id, _ = train_and_register(settings)
    return TrainedRun(home, run_id, FIXTURE_DATA)


@pytest.fixture(scope="session")
def feature_run(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A tiny lung-field feature model trained on the fixture slices (seconds), registered
    as version 1 of `lung-test-feature-run` in its own store."""
    home = tmp_path_factory.mktemp("feature-run")
    settings = store_settings(home, pg_url).model_copy(update={"model_name": FEATURE_RUN})
    run_id, _ = train_feature_model(settings)
    return TrainedRun(home, run_id, FIXTURE_DATA)
