"""DAG file parse time: what the dag-processor pays for each file, every few seconds.

For every file in dags/ (and a one-task baseline DAG written to a temporary folder), a fresh
interpreter imports Airflow, then times `DagBag(<file>)`: once cold (the file's own imports
load for the first time) and then warm (median of 5). The target is well under a second.
See https://airflow.apache.org/docs/apache-airflow/stable/best-practices.html#top-level-python-code
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = """
from datetime import datetime
from airflow.sdk import dag, task

@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def baseline():
    @task
    def hello() -> str:
        return "hello"
    hello()

baseline()
"""
PROBE = """
import json, statistics, sys, time
import airflow.sdk  # noqa: F401  (Airflow itself is loaded before timing)
from airflow.dag_processing.dagbag import DagBag
path = sys.argv[1]
def once() -> float:
    start = time.perf_counter()
    bag = DagBag(dag_folder=path)
    elapsed = time.perf_counter() - start
    assert not bag.import_errors, bag.import_errors
    return elapsed
cold = once()
warm = statistics.median(once() for _ in range(5))
print(json.dumps({"cold": cold, "warm": warm}))
"""


def measure(path: Path) -> dict[str, float]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": tempfile.mkdtemp(prefix="bench-airflow-"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        baseline = Path(folder) / "baseline_dag.py"
        baseline.write_text(BASELINE)
        files = [baseline, *sorted((ROOT / "dags").glob("*.py"))]
        print(f"{'DAG file':<28}{'cold (ms)':>12}{'warm (ms)':>12}")
        for path in files:
            times = measure(path)
            name = "(baseline: one-task DAG)" if path == baseline else path.name
            print(f"{name:<28}{times['cold'] * 1000:>12.0f}{times['warm'] * 1000:>12.1f}")


if __name__ == "__main__":
    main()
