"""`python -m lung_model score`: exit codes and one-line reasons when it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from lung_model import settings as settings_module
from lung_model.cli.main import main
from lung_model.settings import Settings


def test_database_down_exits_3_with_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    settings_module.get_settings.cache_clear()

    code = main(["score"])

    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("error: database unavailable: ") and err.count("\n") == 1


def test_path_that_is_not_a_folder_exits_4(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["score", str(tmp_path / "missing")])

    assert code == 4 and "is not a folder" in capsys.readouterr().err


def test_empty_inbox_completes_without_loading_a_model(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "out.csv"

    code = main(["score", "--csv", str(report)])

    assert code == 0 and "nothing to score" in capsys.readouterr().out
    assert report.read_text().startswith("path,study,status,reason,predicted_class,p_normal,")
