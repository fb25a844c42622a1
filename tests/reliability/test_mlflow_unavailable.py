"""The MLflow store unavailable: a tracking server that does not answer, or the embedded
SQLite store unreadable. The score CLI exits 5 with one line, and the inbox is untouched:
nothing is claimed before the model has loaded."""

from __future__ import annotations

import socket

import pytest
from reliability_helpers import snapshot
from scoring_helpers import make_study, real_slices, rows
from sqlalchemy import Engine

from lung_model import settings as settings_module
from lung_model.cli.main import main
from lung_model.settings import Settings


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe goes


@pytest.mark.parametrize("store", ["server down", "store file corrupt"])
def test_scoring_without_the_model_store_exits_5_and_moves_nothing(
    store: str,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if store == "server down":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
        # MLflow retries a server 7 times over about 4 minutes by default; once is the same test
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    else:
        (settings.home / "mlflow").mkdir()
        (settings.home / "mlflow" / "mlflow.db").write_bytes(b"\x00not sqlite" * 500)
    settings_module.get_settings.cache_clear()
    study = make_study(settings.inbox, f"S-no-store-{store.split()[0]}", real_slices(3))
    before = snapshot(settings.home / "inbox")

    code = main(["score"])

    err = capsys.readouterr().err
    assert code == 5, err
    assert err.startswith("error: model registry unavailable: ") and err.count("\n") == 1, err
    assert snapshot(settings.home / "inbox") == before  # not claimed, not moved, not changed
    assert not any(settings.processing.iterdir())
    assert rows(engine, "SELECT count(*) FROM scan_batches WHERE study = :s", s=study.name) == [
        (0,)
    ]
