"""The batch-scoring DAG's sensor waits by the scorer's rule: a `_READY` folder or link does
not fire it (Airflow's FileSensor fired on a `_READY` folder holding a file), a `_READY`
file does, and its trigger looks with the same rule from the triggerer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import TaskSuccessEvent

from lung_model.pipelines.ready_sensor import ReadyStudySensor, ReadyStudyTrigger


@pytest.fixture
def inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The `lung_inbox` connection pointing at an inbox of our own."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    connection = {"conn_type": "fs", "extra": {"path": str(folder), "ready_marker": "_READY"}}
    monkeypatch.setenv("AIRFLOW_CONN_LUNG_INBOX", json.dumps(connection))
    monkeypatch.setenv("LUNG_HOME", str(tmp_path / "home"))
    return folder


def test_a_marker_folder_or_link_does_not_fire_the_sensor(dagbag: Any, inbox: Path) -> None:
    sensor = dagbag.dags["lung_batch_score"].get_task("wait_for_ready_study")
    assert isinstance(sensor, ReadyStudySensor)
    (inbox / "S-folder" / "_READY").mkdir(parents=True)
    (inbox / "S-folder" / "_READY" / "slice.jpg").write_bytes(b"x")
    (inbox / "S-link").mkdir()
    (inbox / "S-link" / "slice.jpg").write_bytes(b"x")
    (inbox / "S-link" / "_READY").symlink_to(inbox / "S-link" / "slice.jpg")

    assert not sensor.poke({})

    (inbox / "S-ready").mkdir()
    (inbox / "S-ready" / "_READY").touch()
    assert sensor.poke({})
    trigger = ReadyStudyTrigger(*sensor.watched(), poke_interval=sensor.poke_interval)
    path, kwargs = trigger.serialize()
    assert path == "lung_model.pipelines.ready_sensor.ReadyStudyTrigger"
    event = asyncio.run(anext(aiter(ReadyStudyTrigger(**kwargs).run())))
    assert isinstance(event, TaskSuccessEvent)  # the triggerer ends the task: no resume
