"""DAG runs seen from outside Airflow: trigger one, read its task states and latest log line.

States are read from Airflow's metadata database (as the api-server does); the log line from
the task's log file under AIRFLOW_HOME. See
https://airflow.apache.org/docs/apache-airflow/stable/howto/usage-cli.html
"""

from __future__ import annotations

import json
import time

from sqlalchemy import create_engine, text

from lung_model.platform import airflow, db
from lung_model.settings import Settings


def trigger(env: dict[str, str], dag_id: str, conf: dict[str, object] | None = None) -> str:
    """Unpause the DAG and trigger a run; return its run id."""
    run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
    airflow.airflow("dags", "unpause", dag_id, env=env)
    airflow.airflow(
        "dags", "trigger", dag_id, "--conf", json.dumps(conf or {}), "-r", run_id, env=env
    )
    return run_id


def run_states(
    env: dict[str, str], dag_id: str, run_id: str | None
) -> tuple[str, str, dict[str, str]]:
    """(run id, run state, task states) of the run, or of the DAG's latest run."""
    engine = create_engine(db.sqlalchemy_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    try:
        with engine.connect() as connection:
            run = connection.execute(
                text("""SELECT run_id, state FROM dag_run WHERE dag_id = :d
                        AND (CAST(:r AS text) IS NULL OR run_id = :r) ORDER BY id DESC LIMIT 1"""),
                {"d": dag_id, "r": run_id},
            ).first()
            if run is None:
                return "", "none", {}
            rows = connection.execute(
                text("""SELECT task_id, map_index, coalesce(state, 'none') FROM task_instance
                        WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index"""),
                {"d": dag_id, "r": run[0]},
            ).all()
    finally:
        engine.dispose()
    tasks = {(t if m < 0 else f"{t}[{m}]"): s for t, m, s in rows}
    return str(run[0]), str(run[1]), tasks


def last_output(settings: Settings, dag_id: str, run_id: str, task: str) -> str | None:
    """The newest line the running task printed (e.g. Keras' epoch line), from its log."""
    folder = airflow.airflow_home(settings) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    logs = sorted((folder / f"task_id={task}").glob("**/attempt=*.log"))
    if not logs:
        return None
    for line in reversed(logs[-1].read_text(errors="replace").splitlines()[-20:]):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("logger") == "task.stdout" and event.get("event"):
            return str(event["event"])[:160]
    return None
