"""Model safety with real training runs and the real registry: a one-epoch model is gated
and rejected, the champion untouched; a training run killed midway (SIGKILL, as the OOM killer
does) registers nothing and leaves the champion serving, and the next look (`info`) ends its
MLflow run as KILLED with the reason. The tests use their own registered model name in the
session's MLflow store, so the champion the other tests score with stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from tiny_models import FIXTURE_DATA, store_settings, train_and_register

from lung_model.platform import db
from lung_model.platform.orphan_runs import REASON_TAG
from lung_model.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def safety(champion: dict[str, str], pg_url: str) -> Iterator[Settings]:
    """The session champion's run registered again under a model name of its own, made
    champion there by operator override."""
    from lung_model.lifecycle.promotion import promote
    from lung_model.platform.registry import register

    settings = store_settings(Path(champion["home"]), pg_url).model_copy(
        update={"model_name": "lung-safety"}
    )
    version = register(champion["run_id"], settings)
    promote(version, "model safety tests: a known champion", settings, actor="test")
    yield settings


def _events(settings: Settings) -> list[tuple[str, str, str]]:
    with db.get_engine(settings).connect() as connection:
        found = connection.execute(
            text(
                "SELECT candidate_version, decision, actor FROM promotion_events"
                " WHERE model_name = :n ORDER BY id"
            ),
            {"n": settings.model_name},
        )
        return [tuple(row) for row in found]  # type: ignore[misc]


def _registered(settings: Settings) -> list[str]:
    from lung_model.platform.tracking import configure_mlflow

    found = configure_mlflow(settings).search_model_versions(f"name = '{settings.model_name}'")
    return sorted(str(v.version) for v in found)


def test_a_one_epoch_model_is_rejected_and_the_champion_stays(safety: Settings) -> None:
    from lung_model.lifecycle.promotion import run_gate
    from lung_model.platform.registry import current_champion
    from lung_model.scoring.inference import LoadedModel

    before = current_champion(safety)
    _, worse = train_and_register(safety)

    decision = run_gate(worse, safety, FIXTURE_DATA)  # the shipped floors, unchanged

    assert decision.decision == "rejected" and decision.reason.startswith("below floor"), decision
    assert current_champion(safety) == before
    assert _events(safety)[-1] == (worse, "rejected", "gate")
    assert LoadedModel.load(safety).version == before  # what a scorer loads


def test_a_training_run_killed_midway_leaves_the_champion_untouched(
    safety: Settings, pg_url: str
) -> None:
    from lung_model.platform.registry import current_champion
    from lung_model.platform.tracking import configure_mlflow

    before = current_champion(safety), _registered(safety), _events(safety)
    client = configure_mlflow(safety)
    experiment = client.get_experiment_by_name(safety.experiment)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LUNG_", "MLFLOW_"))},
        "LUNG_HOME": str(safety.home),
        "DATABASE_URL": pg_url,
        "LUNG_MODEL_NAME": safety.model_name,
        # the very store and experiment this test reads, whatever earlier tests left around
        "MLFLOW_TRACKING_URI": safety.tracking_uri(),
        "LUNG_EXPERIMENT": safety.experiment,
        "PYTHONUNBUFFERED": "1",  # Keras' epoch lines reach the pipe as they are printed
    }
    training = subprocess.Popen(
        [sys.executable, "-m", "lung_model", "train", "--config", "cnn", "--epochs", "400"]
        + ["--image-size", "64"]
        + ["--data", str(FIXTURE_DATA)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert training.stdout is not None
        for line in training.stdout:
            if line.startswith("Epoch 3/"):
                break  # two epochs trained, the third under way: kill it inside `fit`
        assert training.poll() is None, "training ended before its third epoch"
        runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
        assert len(runs) == 1, f"{len(runs)} running runs in {safety.tracking_uri()}"
        running = runs[0]
        os.kill(training.pid, signal.SIGKILL)
    finally:
        training.kill()
        training.wait(timeout=60)

    assert training.returncode == -signal.SIGKILL
    assert (current_champion(safety), _registered(safety), _events(safety)) == before
    assert client.get_run(running.info.run_id).info.status == "RUNNING"  # nothing ended it
    from lung_model.scoring.inference import LoadedModel

    assert LoadedModel.load(safety).version == before[0]

    info = subprocess.run(
        [sys.executable, "-m", "lung_model", "info"], env=env, capture_output=True, text=True
    )
    assert info.returncode == 0, info.stderr
    killed = client.get_run(running.info.run_id)
    assert killed.info.status == "KILLED", info.stdout
    reason = killed.data.tags[REASON_TAG]
    assert f"(pid {training.pid} on host " in reason and ") no longer exists; noticed " in reason
    assert reason.endswith(" by python -m lung_model info")
    assert f"ended {running.info.run_id} (train-" in info.stdout
