"""Airflow and the local services attacked for real, on one Airflow deployment (its own
metadata database): two `lung_batch_score` runs at once on one inbox (`dag.test()`, as the DAG
tests run them: what two deployments, or a manual run next to the scheduled one, do;
`max_active_runs` only guards runs of one scheduler), each study scored exactly once; and the
services `make demo` starts listen on 127.0.0.1 (`LUNG_BIND_HOST`) only, the helpers Airflow
starts on its own included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from reliability_helpers import scored_once, snapshot
from scoring_helpers import make_study, real_slices
from sqlalchemy import create_engine, text
from test_dag_runs import Deployment, deployment  # noqa: F401  (the module's Airflow)

from lung_model.platform import airflow, db, services, stack
from lung_model.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow
RUNNER = PROJECT_ROOT / "tests" / "dags" / "dag_runner.py"
LOOPBACK = {"127.0.0.1", "::1"}


def _batch_score_run(env: dict[str, str]) -> subprocess.Popen[str]:
    steps = json.dumps([{"dag_id": "lung_batch_score"}])
    return subprocess.Popen(
        [sys.executable, str(RUNNER), steps],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _study_outcomes(airflow: Deployment) -> list[tuple[str, dict[str, Any]]]:
    """(run id, a study's summary) for every study each mapped score_ready_studies task
    of every run returned."""
    engine = create_engine(airflow.metadata_url)
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT run_id, value FROM xcom WHERE dag_id = 'lung_batch_score'"
                " AND task_id = 'score_ready_studies' AND key = 'return_value'"
            )
        ).all()
    engine.dispose()
    return [
        (run, summary)
        for run, value in found
        for summary in (value if isinstance(value, list) else json.loads(value))
    ]


def _wait_for_a_run(metadata_url: str, timeout: float = 300) -> None:
    """Until the first run exists: `dag.test()` first writes the DAG's rows into the metadata
    database, and two doing that at once on a fresh database collide inside Airflow (unique
    asset row), which is not what this test attacks; a deployment's DAG processor does it once."""
    engine = create_engine(metadata_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if connection.execute(text("SELECT count(*) FROM dag_run")).scalar():
                    return
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise TimeoutError("the first lung_batch_score run never started")


def _wait_until_claimed(inbox: Path, studies: list[str], timeout: float = 300) -> None:
    """Until the first run has claimed these studies (moved them out of the inbox)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any((inbox / name).exists() for name in studies):
            return
        time.sleep(0.5)
    raise TimeoutError("the first lung_batch_score run never claimed its studies")


def test_two_batch_score_runs_at_once_score_each_study_once(
    deployment: Deployment,  # noqa: F811
    champion: dict[str, str],
) -> None:
    settings = deployment.settings
    studies = {f"S-airflow-{i}": 3 for i in range(8)}
    parts = real_slices(24, start=840)
    slices = {name: parts[index * 3 : index * 3 + 3] for index, name in enumerate(studies)}
    first_wave, second_wave = list(studies)[:6], list(studies)[6:]
    for name in first_wave:
        make_study(settings.inbox, name, slices[name])
    # `_READY` as a folder with a file in it: no marker, so no run claims it, and no sensor
    # fires on it (Airflow's FileSensor did: the sensor now asks the scorer's rule).
    sentinel = settings.inbox / "S-marker-is-a-folder"
    (sentinel / "_READY").mkdir(parents=True)
    (sentinel / "_READY" / "note.txt").write_text("not a study")
    kept = snapshot(sentinel)
    env = {
        **deployment.env,
        "MLFLOW_TRACKING_URI": champion["MLFLOW_TRACKING_URI"],
        "LUNG_MODEL_NAME": champion["LUNG_MODEL_NAME"],
        # One scoring task a run: dag.test() runs a run's mapped tasks one after the other,
        # so a second task would start once the first had scored the first wave, take the
        # second wave as well, and leave the second run's sensor waiting for a study (as a
        # deployment's next run waits; dag.test() would never end).
        "LUNG_SCORE_TASKS": "1",
    }

    first = _batch_score_run(env)
    _wait_for_a_run(deployment.metadata_url)  # see _wait_for_a_run
    # A sensor fires only on a study it could claim: the second run gets a second wave of
    # its own, and with it the first wave's claims that no task of the first run holds yet.
    _wait_until_claimed(settings.inbox, first_wave)
    for name in second_wave:
        make_study(settings.inbox, name, slices[name])
    runs = [first, _batch_score_run(env)]
    outputs = [run.communicate(timeout=600) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err[-3000:] for _, err in outputs]
    states = [
        json.loads(line)["state"]
        for out, _ in outputs
        for line in out.splitlines()
        if line.startswith("{")
    ]
    assert states == ["success", "success"]
    assert snapshot(sentinel) == kept
    outcomes = [(r["study"], r["status"]) for _, r in _study_outcomes(deployment)]
    done = sorted(study for study, status in outcomes if status == "done")
    assert done == sorted(studies)  # each study scored by one task of one run
    assert {status for _, status in outcomes} <= {"done", "busy", "gone"}  # the others saw it taken
    sentinel.rename(settings.home / "sentinel-checked")  # scored_once wants an empty inbox
    scored_once(db.get_engine(settings), settings.home, champion["version"], studies)


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    found = set()
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return found
    for process in tree:
        try:
            sockets = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found |= {(s.laddr.ip, s.laddr.port) for s in sockets if s.status == psutil.CONN_LISTEN}
    return found


def test_the_local_services_listen_on_loopback_only(deployment: Deployment) -> None:  # noqa: F811
    names = ("airflow", "mlflow", "dashboard", "health", "dicom")
    ports = {name: services.free_port() for name in names}
    settings = deployment.settings.model_copy(
        update={
            "dicom_port": ports["dicom"],
            "airflow_url": f"http://127.0.0.1:{ports['airflow']}",
            "mlflow_ui_url": f"http://127.0.0.1:{ports['mlflow']}",
            "dashboard_url": f"http://127.0.0.1:{ports['dashboard']}",
        }
    )
    env = airflow.environment(settings, metadata=deployment.metadata_url)
    env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(ports["health"])
    started = stack.local_services(settings, env)
    expected = set(ports.values())
    try:
        pids = {s.name: services.start(settings, s) for s in started}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            listening = set().union(*(_listening(pid) for pid in pids.values()))
            if expected <= {port for _, port in listening}:
                break
            for service in started:
                if services.running(settings, service.name) is None:
                    log = services.log_file(settings, service.name).read_text(errors="replace")
                    pytest.fail(f"{service.name} exited:\n{log[-2000:]}")
            time.sleep(2)
        time.sleep(3)  # the slower helpers (log servers, workers) of each service start too
        listening = set().union(*(_listening(pid) for pid in pids.values()))
    finally:
        for service in reversed(started):
            services.stop(settings, service.name, grace_seconds=10)

    assert expected <= {port for _, port in listening}, (expected, listening)
    assert {address for address, _ in listening} <= LOOPBACK, listening
