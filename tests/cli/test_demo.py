"""`make demo`'s script: it speaks at least once a minute while it waits, times its phases
from measurements, prints the logins as soon as the services answer, claims the retrain's
scheduled tick, and a second run drops no demo study twice."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from lung_model.cli import demo, hospital_demo
from lung_model.data.dvc import sha256_of
from lung_model.platform import airflow, airflow_runs, db, services
from lung_model.settings import PROJECT_ROOT, Settings

RAW = PROJECT_ROOT / "data" / "raw" / "Malignant cases"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_heartbeat_speaks_after_a_silent_stretch_only() -> None:
    clock, lines = Clock(), []
    narrator = demo.Narrator(every=50, clock=clock, out=lines.append)
    narrator.say("started")
    clock.now += 49
    narrator.heartbeat("still waiting")
    assert len(lines) == 1
    clock.now += 1
    narrator.heartbeat("still waiting")
    clock.now += 10
    narrator.heartbeat("still waiting")  # spoke 10 s ago: quiet
    assert [line.split("] ", 1)[1] for line in lines] == ["started", "still waiting"]


def test_the_waiting_line_names_the_run_the_task_and_the_epoch() -> None:
    line = demo.waiting_line(
        "lung_retrain",
        "demo__1",
        "running",
        {"pull_data": "success", "train": "running"},
        {"train": "Epoch 7/30 - loss 0.41"},
        began=0.0,
    )
    assert "lung_retrain run demo__1 (running)" in line
    assert "train running" in line and "pull_data" not in line
    assert line.endswith("last line: Epoch 7/30 - loss 0.41")


def test_phase_times_are_measured_and_add_up_to_the_total() -> None:
    clock = Clock(1000.0)
    timer = demo.PhaseTimer(started_at=880.0, clock=clock)  # make began 2 min earlier
    with timer.phase("services up"):
        clock.now += 75
    with timer.phase("retrain"):
        clock.now += 600
    assert timer.table() == [
        "  setup, db, data      2:00",
        "  services up          1:15",
        "  retrain             10:00",
        "  total               13:15",
    ]


def test_the_logins_are_printed_as_soon_as_the_services_answer(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    events: list[str] = []
    monkeypatch.setattr(hospital_demo, "local_pacs_destination", lambda s: None)
    monkeypatch.setattr(demo.stack, "up", lambda *a, **k: events.append("up") or {})
    monkeypatch.setattr(demo, "print_access", lambda s: events.append("access"))
    monkeypatch.setattr(demo, "retrain", lambda *a: events.append("retrain"))
    monkeypatch.setattr(demo, "score_demo_studies", lambda *a: events.append("scoring") or True)
    monkeypatch.setattr(demo, "hospital_phase", lambda *a, **k: events.append("hospital") or True)

    code = demo.cli_demo(argparse.Namespace(started_at=None))

    assert code == 0
    assert events[:3] == ["up", "access", "retrain"]


def test_with_orthanc_the_demos_airflow_sends_the_srs_to_it(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """Airflow starts with the hospital loop's Orthanc as the SR destination, and
    lung_results_out is unpaused once the loop worked, so a final SR follows a review."""
    started: list[Settings] = []
    unpaused: list[tuple[str, ...]] = []
    monkeypatch.setattr(hospital_demo, "local_pacs_destination", lambda s: "ORTHANC@127.0.0.1:1")
    monkeypatch.setattr(demo.stack, "up", lambda s, **k: started.append(s) or {"E": "1"})
    monkeypatch.setattr(demo, "print_access", lambda s: None)
    monkeypatch.setattr(demo, "retrain", lambda *a: None)
    monkeypatch.setattr(demo, "score_demo_studies", lambda *a: True)
    monkeypatch.setattr(demo, "demo_studies", lambda *a, **k: {"demo-study-1": []})
    monkeypatch.setattr(demo.airflow, "airflow", lambda *a, env: unpaused.append(a) or "")
    args = argparse.Namespace(started_at=None, studies=1, timeout=60)
    for loop_works, expected in ((False, []), (True, [("dags", "unpause", "lung_results_out")])):
        unpaused.clear()
        monkeypatch.setattr(hospital_demo, "hospital_loop", lambda *a, works=loop_works, **k: works)
        assert demo.cli_demo(args) == (0 if loop_works else 1)
        assert started[-1].results_dicom_destination == "ORTHANC@127.0.0.1:1"
        assert unpaused == expected
    env = airflow.environment(started[-1])
    assert env["LUNG_RESULTS_DICOM_DESTINATION"] == "ORTHANC@127.0.0.1:1"
    assert "LUNG_RESULTS_DICOM_DESTINATION" not in airflow.environment(settings)


def test_the_local_pacs_is_the_destination_only_when_none_is_configured(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    ports = (services.free_port(), services.free_port())
    monkeypatch.setattr(hospital_demo.orthanc, "installed", lambda: True)
    found = hospital_demo.local_pacs_destination(settings, ports)
    assert found == f"{hospital_demo.orthanc.AE_TITLE}@127.0.0.1:{ports[1]}"
    configured = settings.model_copy(update={"results_dicom_destination": "PACS@10.0.0.1:104"})
    assert hospital_demo.local_pacs_destination(configured, ports) is None
    monkeypatch.setattr(hospital_demo.orthanc, "installed", lambda: False)
    assert hospital_demo.local_pacs_destination(settings, ports) is None


def test_the_demo_run_is_the_scheduled_tick_and_is_triggered_before_unpausing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(airflow_runs.airflow, "airflow", lambda *a, env: calls.append(a) or "")

    airflow_runs.trigger({}, "lung_retrain", {"config": "tiny"}, "2026-11-29T03:00:00+00:00")

    assert [c[:2] for c in calls] == [("dags", "trigger"), ("dags", "unpause")]
    assert calls[0][calls[0].index("--logical-date") + 1] == "2026-11-29T03:00:00+00:00"


def _scored_batch(settings: Settings, study: str, files: list[Path]) -> None:
    with db.get_engine(settings).begin() as connection:
        batch = connection.execute(
            text("""INSERT INTO scan_batches (study, source_path, status)
                    VALUES (:s, :p, 'done') RETURNING id"""),
            {"s": study, "p": f"/archive/{study}"},
        ).scalar_one()
        for file in files:
            connection.execute(
                text("""INSERT INTO images (batch_id, path, sha256, status)
                        VALUES (:b, :p, :h, 'scored')"""),
                {"b": batch, "p": file.name, "h": sha256_of(file)},
            )


def test_a_second_demo_drops_nothing_twice(settings: Settings) -> None:
    slices = sorted(RAW.glob("*.jpg"))[:6]
    tag = uuid.uuid4().hex[:6]
    studies = {
        f"demo-scored-{tag}": slices[:2],
        f"demo-waiting-{tag}": slices[2:4],
        f"demo-new-{tag}": slices[4:6],
        f"demo-changed-{tag}": slices[:2],  # same name as a batch below, other content
    }
    _scored_batch(settings, f"demo-scored-{tag}", slices[:2])
    _scored_batch(settings, f"demo-changed-{tag}", slices[4:5])
    demo.drop_into_inbox(settings, {f"demo-waiting-{tag}": slices[2:4]})

    assert demo.already_there(settings, studies) == {
        f"demo-scored-{tag}": "scored before",
        f"demo-waiting-{tag}": "waiting in the inbox",
    }
    claim = settings.processing / "claim-1"
    claim.mkdir()
    (settings.inbox / f"demo-waiting-{tag}").rename(claim / f"demo-waiting-{tag}")
    assert demo.already_there(settings, studies)[f"demo-waiting-{tag}"] == "waiting in the inbox"


def test_demo_studies_and_their_files_tell_no_class(settings: Settings) -> None:
    """Issue 22 item 5: a study named 'demo-malignant-1' holding 'Malignant case (8).jpg'
    gives the reviewer the answer; dropped studies and files carry neutral names."""
    studies = demo.demo_studies(PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd", slices=3)
    assert sorted(studies) == ["demo-study-1", "demo-study-2", "demo-study-3"]
    classes = {file.parent.name for files in studies.values() for file in files}
    assert len(classes) == 3  # one study of each class, whatever the order
    tag = uuid.uuid4().hex[:6]
    dropped = {f"{name}-{tag}": files for name, files in studies.items()}
    demo.drop_into_inbox(settings, dropped)
    for name, files in dropped.items():
        folder = settings.inbox / name
        names = sorted(p.name for p in folder.iterdir() if p.name != settings.ready_marker)
        assert names == ["slice-001.jpg", "slice-002.jpg", "slice-003.jpg"]
        assert [sha256_of(folder / n) for n in names] == [sha256_of(f) for f in files]
    assert demo.already_there(settings, dropped) == {n: "waiting in the inbox" for n in dropped}
