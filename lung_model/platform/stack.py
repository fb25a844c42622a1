"""The local services `make demo` runs: Airflow, the MLflow UI, the DICOM receiver and the
review dashboard.

`up` bootstraps Airflow's metadata, starts each service on `LUNG_BIND_HOST` (a no-op for one
already running) and waits until every one answers; `down` stops them in reverse order.
See https://airflow.apache.org/docs/apache-airflow/stable/howto/usage-cli.html
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from lung_model.platform import airflow, services
from lung_model.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent
DASHBOARD_APP = PROJECT_ROOT / "dashboards" / "app.py"


def local_services(settings: Settings, env: dict[str, str]) -> list[services.Service]:
    """Everything `make demo` runs, in start order."""
    host = settings.bind_host
    airflow_cli = str(BIN / "airflow")
    mlflow, dashboard = urlsplit(settings.mlflow_ui_url), urlsplit(settings.dashboard_url)
    found = [
        services.Service(
            "airflow-api-server",
            [airflow_cli, "api-server", "--host", host, "--port", env["AIRFLOW__API__PORT"]],
            env,
            f"{settings.airflow_url.rstrip('/')}/api/v2/monitor/health",
        ),
        # Their log servers would listen on every interface (Airflow has no host setting for
        # them); on one machine the api-server reads the task logs from AIRFLOW_HOME itself.
        services.Service("airflow-scheduler", [airflow_cli, "scheduler", "--skip-serve-logs"], env),
        services.Service("airflow-dag-processor", [airflow_cli, "dag-processor"], env),
        services.Service("airflow-triggerer", [airflow_cli, "triggerer", "--skip-serve-logs"], env),
        services.Service(
            "mlflow-ui",
            [str(BIN / "mlflow"), "server", "--backend-store-uri", settings.tracking_uri()]
            + ["--host", host, "--port", str(mlflow.port or 5000), "--workers", "1"],
            {"MLFLOW_TRACKING_URI": settings.tracking_uri()},
            f"{settings.mlflow_ui_url.rstrip('/')}/health",
        ),
    ]
    found.append(  # a port, not a URL: up as soon as it runs
        services.Service(
            "dicom-receiver",
            [sys.executable, "-m", "lung_model", "receive"],
            {"LUNG_HOME": str(settings.home), "LUNG_DICOM_PORT": str(settings.dicom_port)}
            | {"LUNG_DICOM_BIND_HOST": settings.dicom_bind_host},
        )
    )
    if DASHBOARD_APP.exists():
        found.append(
            services.Service(
                "dashboard",
                [str(BIN / "streamlit"), "run", str(DASHBOARD_APP), "--server.headless", "true"]
                + ["--server.address", host, "--server.port", str(dashboard.port or 8501)]
                + ["--browser.gatherUsageStats", "false"],
                {"LUNG_HOME": str(settings.home)},
                f"{settings.dashboard_url.rstrip('/')}/_stcore/health",
            )
        )
    return found


def up(settings: Settings, report: Callable[[str], None]) -> dict[str, str]:
    """Bootstrap Airflow's metadata, start every service, wait for them; return the env.
    `report` receives one line per step (the demo prints them)."""
    report("Airflow metadata database (PostgreSQL) and pools")
    env = airflow.environment(settings)
    airflow.migrate_metadata(env)
    running = local_services(settings, env)
    for service in running:
        pid = services.start(settings, service)
        report(f"{service.name}: pid {pid}, log {services.log_file(settings, service.name)}")
    began = time.monotonic()
    for service in running:  # one line per service as it answers: no silent minute
        services.wait_until_up(settings, service, timeout=180)
        report(f"{service.name} answers ({time.monotonic() - began:.0f} s)")
    report("all services answer; parsing the DAGs into the metadata database")
    airflow.airflow("dags", "reserialize", env=env)
    return env


def down(settings: Settings) -> list[str]:
    """Stop every service `up` started (in reverse order); return the names stopped."""
    stopped = []
    names = [s.name for s in local_services(settings, {"AIRFLOW__API__PORT": "0"})]
    names.append("orthanc")  # the demo's local PACS, when `make demo` started one
    for name in reversed(names):
        if services.stop(settings, name):
            stopped.append(name)
    return stopped
