"""Airflow for the DAG tests: configured through the environment before Airflow is imported.

Each test session gets its own AIRFLOW_HOME and, for the tests that run DAGs, its own
metadata database on the real PostgreSQL (see `airflow_env`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lung_model.settings import PROJECT_ROOT

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="lung-airflow-test-"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
sys.path.insert(0, str(PROJECT_ROOT / "plugins"))


@pytest.fixture(scope="session")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(PROJECT_ROOT / "dags"))


@pytest.fixture(scope="session")
def dags_dir() -> Iterator[Path]:
    yield PROJECT_ROOT / "dags"
