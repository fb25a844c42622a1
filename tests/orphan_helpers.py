"""A RUNNING MLflow run whose training process is gone: a real child process owns it (its
host, pid and start time recorded as a training run records them), then is SIGKILLed."""

from __future__ import annotations

import subprocess
import sys

import psutil
from mlflow import MlflowClient

from lung_model.platform.orphan_runs import PID_TAG, STARTED_TAG, owner_tags


def tags_of(pid: int) -> dict[str, str]:
    """The owner tags process `pid` would have set on its run."""
    started = f"{psutil.Process(pid).create_time():.2f}"
    return {**owner_tags(), PID_TAG: str(pid), STARTED_TAG: started}


def orphaned_run(client: MlflowClient, experiment_id: str, run_name: str) -> tuple[str, int]:
    """(run id, pid of its killed and reaped process)."""
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        run = client.create_run(experiment_id, tags=tags_of(trainer.pid), run_name=run_name)
    finally:
        trainer.kill()
        trainer.wait()
    return str(run.info.run_id), trainer.pid
