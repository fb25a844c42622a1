"""`make demo`'s hospital loop against a real Orthanc: the demo study pushed to the receiver,
scored (here by a scorer thread standing in for the running batch-score DAG), its SR back in
Orthanc; a second run sends nothing twice; `make stop` stops the Orthanc it started."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from dicom_series import fixture_slices
from orthanc_pacs import needs_orthanc
from tiny_models import FEATURE_RUN, TrainedRun

from lung_model.cli.hospital_demo import SERVICE, hospital_loop
from lung_model.exchange.receiver import Service
from lung_model.platform import services, stack
from lung_model.platform.db import get_engine
from lung_model.platform.services import free_port
from lung_model.scoring.engine import Scorer
from lung_model.scoring.inbox import find_ready_studies
from lung_model.scoring.inference import LoadedModel
from lung_model.settings import Settings

pytestmark = needs_orthanc


@pytest.fixture
def scoring(
    dicom_settings: Settings, empty_pg_url: str, feature_run: TrainedRun, pg_url: str
) -> Iterator[Settings]:
    """The receiver and a scorer of ready studies running, on a database of the test's own."""
    dicom_settings.database_url = empty_pg_url
    engine = get_engine(dicom_settings)
    model = LoadedModel.load(feature_run.settings(pg_url, FEATURE_RUN), f"models:/{FEATURE_RUN}/1")
    scorer = Scorer(model, engine, dicom_settings, workers=1)
    receiver = Service(dicom_settings)
    stop = threading.Event()

    def score() -> None:
        while not stop.wait(0.5):
            for folder in find_ready_studies(dicom_settings):
                scorer.score_claimed(folder)

    scoring = threading.Thread(target=score, daemon=True)
    scoring.start()
    try:
        yield dicom_settings
    finally:
        stop.set()
        scoring.join(timeout=60)
        receiver.close()
        services.stop(dicom_settings, SERVICE)


def test_the_demo_study_goes_through_orthanc_and_its_sr_comes_back_once(
    scoring: Settings,
) -> None:
    said: list[str] = []
    ports = (free_port(), free_port())
    slices = fixture_slices(4)
    assert hospital_loop(scoring, slices, said.append, timeout=120, ports=ports)
    assert any("1 SR in the study on Orthanc" in line for line in said), said

    said.clear()  # a second demo: the same study, nothing received, scored or sent twice
    assert hospital_loop(scoring, slices, said.append, timeout=120, ports=ports)
    assert any("0 sent, 0 failed; 1 SR in the study" in line for line in said), said

    assert services.running(scoring, SERVICE) is not None
    assert SERVICE in stack.down(scoring)
    assert services.running(scoring, SERVICE) is None
