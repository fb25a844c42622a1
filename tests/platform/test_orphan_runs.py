"""Orphaned training runs in a real MLflow store: a RUNNING run whose process is gone (exited,
a zombie, its pid reused) is ended as KILLED with the reason; a live one, or a young one from
another host, is left running; another host's run ends only after long silence."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from mlflow import MlflowClient
from orphan_helpers import orphaned_run, tags_of

from lung_model.platform.orphan_runs import (
    HOST_TAG,
    REASON_TAG,
    STALE_AFTER,
    STARTED_TAG,
    end_orphans_of,
    owner_tags,
)
from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import Settings

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def client(settings: Settings) -> MlflowClient:
    return configure_mlflow(settings)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A real process of our own, to run a training's part: alive until the test ends it."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def _run(client: MlflowClient, settings: Settings, tags: dict[str, str], **kw: int) -> str:
    experiment = client.get_experiment_by_name(settings.experiment)
    assert experiment is not None
    return str(client.create_run(experiment.experiment_id, tags=tags, **kw).info.run_id)


def _state(client: MlflowClient, run_id: str) -> tuple[str, str | None]:
    run = client.get_run(run_id)
    return run.info.status, run.data.tags.get(REASON_TAG)


def test_a_run_whose_process_died_is_killed_a_live_one_is_left(
    client: MlflowClient, settings: Settings
) -> None:
    experiment = client.get_experiment_by_name(settings.experiment)
    assert experiment is not None
    dead, pid = orphaned_run(client, experiment.experiment_id, "train-killed")
    alive = _run(client, settings, owner_tags())  # this very process

    sweep = end_orphans_of(settings, "the test")

    assert [o.run_id for o in sweep.ended] == [dead] and sweep.in_progress == 1
    status, reason = _state(client, dead)
    assert status == "KILLED" and reason is not None
    assert reason.startswith(f"the run's process (pid {pid} on host {owner_tags()[HOST_TAG]}")
    assert ") no longer exists; noticed " in reason and reason.endswith(" by the test")
    assert client.get_run(dead).info.end_time is not None
    assert _state(client, alive) == ("RUNNING", None)
    assert end_orphans_of(settings, "the test").ended == []  # once: nothing more to end


def test_a_zombie_or_a_reused_pid_is_no_owner(
    client: MlflowClient, settings: Settings, child: subprocess.Popen[bytes]
) -> None:
    zombie = _run(client, settings, tags_of(child.pid))
    child.kill()  # not waited for: a zombie until the fixture reaps it
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    earlier = {**owner_tags(), STARTED_TAG: f"{psutil.Process().create_time() - 3600:.2f}"}
    reused = _run(client, settings, earlier)  # our pid, but a process started an hour before us

    end_orphans_of(settings, "the test")

    status, reason = _state(client, zombie)
    assert status == "KILLED" and reason is not None and "a zombie" in reason
    status, reason = _state(client, reused)
    assert status == "KILLED" and reason is not None
    assert "no longer exists: pid " in reason and " belongs to a process started " in reason


def test_another_hosts_run_ends_only_after_long_silence(
    client: MlflowClient, settings: Settings
) -> None:
    elsewhere = {**owner_tags(), HOST_TAG: "another-worker"}
    now = int(time.time() * 1000)
    young = _run(client, settings, elsewhere, start_time=now - DAY_MS)
    busy = _run(client, settings, elsewhere, start_time=now - 3 * DAY_MS)
    client.log_metric(busy, "epoch_loss", 0.5, timestamp=now - 3600 * 1000)  # an hour ago
    silent = _run(client, settings, elsewhere, start_time=now - 3 * DAY_MS)
    client.log_metric(silent, "epoch_loss", 0.5, timestamp=now - 3 * DAY_MS + 60_000)
    untagged = _run(client, settings, {}, start_time=now - 3 * DAY_MS)  # before owner tags
    assert STALE_AFTER * 1000 == 2 * DAY_MS

    sweep = end_orphans_of(settings, "the test")

    assert {o.run_id for o in sweep.ended} == {silent, untagged} and sweep.in_progress == 2
    assert _state(client, young) == _state(client, busy) == ("RUNNING", None)
    status, reason = _state(client, silent)
    assert status == "KILLED" and reason is not None
    assert reason.startswith("started on host another-worker, not this one (")
    assert "; nothing logged since " in reason and ", over 48 h; noticed " in reason
    status, reason = _state(client, untagged)
    assert status == "KILLED" and reason is not None
    assert reason.startswith("no owner recorded; nothing logged since ")
