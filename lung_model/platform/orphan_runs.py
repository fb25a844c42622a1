"""Training runs whose process is gone. A SIGKILLed training (the OOM killer, a killed worker)
leaves its MLflow run RUNNING forever: nothing is left to end it. Whoever looks next (a
retrain, `python -m lung_model info`, the Model page) ends it as KILLED, with the reason in
the `lung.orphan_reason` tag.

Every training run records who runs it (`owner_tags`): host, pid and that process's start
time. A RUNNING run is orphaned when
- it was started on this host and that process no longer exists, is a zombie, or its pid now
  belongs to a process started later (pids are reused: after a reboot, in a restarted
  container);
- it was started on another host (another Celery worker or container: its processes cannot
  be seen from here), or before these tags existed, and nothing was logged to it for
  `STALE_AFTER`. A training run here takes minutes to an hour, so two days of silence never
  ends a live one; a shorter wait could.
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.client.html
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psutil

from lung_model.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

HOST_TAG = "lung.host"
PID_TAG = "lung.pid"
STARTED_TAG = "lung.process_started"  # the process's start time, seconds since the epoch
REASON_TAG = "lung.orphan_reason"
STALE_AFTER = 48 * 3600.0  # seconds without activity before another host's run is ended
_CLOCK_SLACK = 1.0  # psutil derives start times from boot time and clock ticks


def _started(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


def owner_tags() -> dict[str, str]:
    """Tags naming this process, set when a training run starts."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: f"{_started(pid):.2f}"}


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _process_gone(pid: int, started: float) -> str | None:
    """How process `pid`, started at `started`, is gone; None while it runs."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return "has exited (a zombie not yet reaped)"
        now_started = float(process.create_time())
    except psutil.NoSuchProcess:
        return "no longer exists"
    if now_started > started + _CLOCK_SLACK:
        return f"no longer exists: pid {pid} belongs to a process started {_when(now_started)}"
    return None


def _last_activity(client: MlflowClient, run: Run) -> float:
    """Seconds since the epoch of the run's start or its latest logged metric."""
    latest = run.info.start_time or 0
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        latest = max([latest, *(m.timestamp for m in history)])
    return latest / 1000


def orphan_reason(
    client: MlflowClient,
    run: Run,
    now: float,
    stale_after: float = STALE_AFTER,
    host: str | None = None,
) -> str | None:
    """Why the RUNNING `run` has nobody left to end it, or None when it may still be running."""
    host = host or socket.gethostname()
    tags = run.data.tags
    owner = tags.get(HOST_TAG)
    if owner == host and PID_TAG in tags and STARTED_TAG in tags:
        pid, started = int(tags[PID_TAG]), float(tags[STARTED_TAG])
        gone = _process_gone(pid, started)
        if gone is None:
            return None
        return f"the run's process (pid {pid} on host {host}, started {_when(started)}) {gone}"
    if (run.info.start_time or 0) / 1000 > now - stale_after:
        return None  # cheap check first: most runs are young
    last = _last_activity(client, run)
    if last > now - stale_after:
        return None
    where = f"started on host {owner}, not this one ({host})" if owner else "no owner recorded"
    return f"{where}; nothing logged since {_when(last)}, over {stale_after / 3600:.0f} h"


@dataclass(frozen=True)
class Orphan:
    run_id: str
    run_name: str
    reason: str


@dataclass(frozen=True)
class Sweep:
    in_progress: int  # RUNNING runs left alone
    ended: list[Orphan]


def end_orphans(
    client: MlflowClient, experiment_id: str, noticed_by: str, stale_after: float = STALE_AFTER
) -> Sweep:
    """End every orphaned RUNNING run of the experiment as KILLED, the reason tagged (what was
    gone, when and by whom it was noticed)."""
    now = time.time()
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    ended = []
    for run in running:
        why = orphan_reason(client, run, now, stale_after)
        # read again: a process that ended its run and exited since the search is no orphan
        if why is None or client.get_run(run.info.run_id).info.status != "RUNNING":
            continue
        reason = f"{why}; noticed {_when(now)} by {noticed_by}"
        client.set_tag(run.info.run_id, REASON_TAG, reason)
        client.set_terminated(run.info.run_id, "KILLED", end_time=int(now * 1000))
        ended.append(Orphan(run.info.run_id, run.info.run_name or "", reason))
    return Sweep(len(running) - len(ended), ended)


def end_orphans_of(settings: Settings, noticed_by: str) -> Sweep:
    """`end_orphans` in the configured experiment (MLflow configured on the way); nothing to
    do before the local store exists."""
    from lung_model.platform.tracking import configure_mlflow

    if not settings.mlflow_tracking_uri and not (settings.home / "mlflow" / "mlflow.db").exists():
        return Sweep(0, [])
    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    assert experiment is not None  # configure_mlflow creates it
    return end_orphans(client, experiment.experiment_id, noticed_by)
