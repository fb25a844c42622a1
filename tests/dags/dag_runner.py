"""Run DAGs with `dag.test()` in one interpreter, so Airflow, its in-process execution API
and TensorFlow load once (what `airflow dags test` does, per DAG, in a fresh process).

Usage: python dag_runner.py '[{"dag_id": ..., "conf": {...}}, {"promote_if_no_champion": true}]'
Prints one JSON line per DAG run: {"dag_id", "run_id", "state"}. Airflow is configured by the
environment (see `lung_model.platform.airflow.environment`).
"""

from __future__ import annotations

import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag


def main(steps: list[dict]) -> None:
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    for step in steps:
        if step.get("promote_if_no_champion"):
            from lung_model.cli.demo import override_gate  # what `make demo` does in that case
            from lung_model.platform.registry import current_champion
            from lung_model.settings import get_settings

            if current_champion(get_settings()) is None:
                override_gate(get_settings())
            continue
        run = bag.dags[step["dag_id"]].test(run_conf=step.get("conf"))
        print(json.dumps({"dag_id": run.dag_id, "run_id": run.run_id, "state": str(run.state)}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
