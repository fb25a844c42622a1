"""Fixtures for the scoring tests: real slices, stand-in models, a database engine."""

from __future__ import annotations

import uuid

import pytest
from scoring_toys import ToyPredictor
from sqlalchemy import Engine

from lung_model.platform.db import get_engine
from lung_model.settings import Settings


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return get_engine(settings)


@pytest.fixture
def toy(request: pytest.FixtureRequest) -> ToyPredictor:
    """A fresh model version per test, so tests sharing the database never share rows."""
    return ToyPredictor(version=f"{request.node.name[:30]}-{uuid.uuid4().hex[:6]}")
