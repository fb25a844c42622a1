"""The local services `make demo` starts (Airflow api-server, scheduler, dag-processor,
triggerer, the MLflow UI, the dashboard), started for real: every socket they listen on is on
127.0.0.1 (`LUNG_BIND_HOST`), the helpers Airflow starts on its own included."""

from __future__ import annotations

import time

import psutil
import pytest
from test_dag_runs import Deployment, deployment  # noqa: F401  (the module's Airflow)

from lung_model import airflow_setup, demo, services

pytestmark = pytest.mark.slow
LOOPBACK = {"127.0.0.1", "::1"}


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
    from test_dag_runs import free_port

    ports = {name: free_port() for name in ("airflow", "mlflow", "dashboard", "health")}
    settings = deployment.settings.model_copy(
        update={
            "airflow_url": f"http://127.0.0.1:{ports['airflow']}",
            "mlflow_ui_url": f"http://127.0.0.1:{ports['mlflow']}",
            "dashboard_url": f"http://127.0.0.1:{ports['dashboard']}",
        }
    )
    env = airflow_setup.environment(settings, metadata=deployment.metadata_url)
    env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(ports["health"])
    started = demo.local_services(settings, env)
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
