"""Fixtures for the attacks on the running system: the scoring tests' helpers, an engine,
and a tiny champion registered once per session in an MLflow store of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lung_model.platform.db import get_engine
from lung_model.settings import Settings

# The scoring and DAG tests' helpers (real slices, stand-in models, an Airflow deployment)
# are plain modules in their folders.
for folder in ("scoring", "dags"):
    sys.path.insert(0, str(Path(__file__).parents[1] / folder))


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return get_engine(settings)


@pytest.fixture(scope="session")
def champion(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A one-epoch 32 px model trained on the fixture slices, registered and made champion
    by operator override in its own MLflow store; the environment that finds it."""
    from tiny_models import tiny_champion

    yield tiny_champion(tmp_path_factory.mktemp("champion"), pg_url)
