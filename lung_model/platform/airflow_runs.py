"""DAG runs seen from outside Airflow: trigger one, read its task states and latest log line.

States are read from Airflow's metadata database (as the api-server does); the log line from
the task's log file under AIRFLOW_HOME. See
https://airflow.apache.org/docs/apache-airflow/stable/howto/usage-cli.html
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from lung_model.platform import airflow, db
from lung_model.settings import Settings


def trigger(
    env: dict[str, str],
    dag_id: str,
    conf: dict[str, object] | None = None,
    logical_date: str | None = None,
) -> str:
    """Trigger a run (for `logical_date` when given), then unpause the DAG; return the run id.

    Unpausing a DAG with a time schedule and `catchup=False` makes the scheduler create a
    run for the schedule's latest past tick when that tick is at most a tenth of the interval
    old (Airflow's cron trigger timetable, even with `run_immediately=False`; 16.8 h for a
    weekly schedule). Triggering for that tick first (`due_tick`) makes this run that tick:
    the scheduler sees a run for it and moves on to the next tick, so unpausing starts
    nothing more. Later, no tick is due and this is a plain manual run."""
    run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
    command = ["dags", "trigger", dag_id, "--conf", json.dumps(conf or {}), "-r", run_id]
    if logical_date:
        command += ["--logical-date", logical_date]
    airflow.airflow(*command, env=env)
    airflow.airflow("dags", "unpause", dag_id, env=env)
    return run_id


def scheduled_tick(env: dict[str, str], dag_id: str) -> str | None:
    """The logical date (ISO) of the run the scheduler will create next for the DAG, as the
    DAG processor computed it (None before the DAG is parsed, or without a time schedule)."""
    engine = create_engine(db.sqlalchemy_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    try:
        with engine.connect() as connection:
            tick = connection.execute(
                text("SELECT next_dagrun FROM dag WHERE dag_id = :d"), {"d": dag_id}
            ).scalar()
    finally:
        engine.dispose()
    return tick.isoformat() if tick is not None else None


def due_tick(env: dict[str, str], dag_id: str) -> str | None:
    """The scheduled tick the scheduler would run as soon as the DAG is unpaused (its next
    logical date, when that is not in the future); None when nothing is due. A future tick is
    not claimed: a run for it would stand in for that week's retrain."""
    tick = scheduled_tick(env, dag_id)
    if tick is None or datetime.fromisoformat(tick) > datetime.now(UTC):
        return None
    return tick


def runs(env: dict[str, str], dag_id: str) -> list[tuple[str, str, str]]:
    """(run id, run type, state) of every run of the DAG, oldest first."""
    engine = create_engine(db.sqlalchemy_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT run_id, run_type, state FROM dag_run WHERE dag_id = :d ORDER BY id"),
                {"d": dag_id},
            ).all()
    finally:
        engine.dispose()
    return [(str(r), str(t), str(s)) for r, t, s in rows]


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
