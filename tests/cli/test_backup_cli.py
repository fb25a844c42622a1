"""`python -m lung_model backup` and `restore`: exit codes and one-line errors, keeping the
last N, a damaged backup refused, and a restore onto an empty database that the dashboard's
role can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lung_model import settings as settings_module
from lung_model.cli.exit_codes import ExitCode
from lung_model.cli.main import main
from lung_model.lifecycle.backup import backups
from lung_model.platform import db
from lung_model.settings import Settings


@pytest.fixture(autouse=True)
def no_data_pointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the checkout's data/raw.dvc out of these backups and restores."""
    monkeypatch.setattr("lung_model.lifecycle.backup.RAW_DVC_FILE", tmp_path / "no.dvc")
    monkeypatch.setattr("lung_model.lifecycle.restore.RAW_DVC_FILE", tmp_path / "no.dvc")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_backup_keeps_the_last_n_and_restore_refuses_a_database_with_results(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = tmp_path / "backups"
    for _ in range(3):
        assert main(["backup", str(parent), "--keep", "2"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.count("pruned ") == 1 and "database.dump" not in out
    assert len(backups(parent)) == 2 and not list(parent.glob(".*"))
    counts = db.row_counts(db.get_engine(settings))

    code = main(["restore", str(parent)])

    err = one_error_line(capsys)
    assert code == ExitCode.REFUSED and "already holds results tables" in err
    assert "--force" in err and db.row_counts(db.get_engine(settings)) == counts


def test_no_backup_and_a_damaged_backup_are_refused(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["restore", str(tmp_path)]) == ExitCode.REFUSED
    assert "no backup in" in one_error_line(capsys)
    assert main(["backup", str(tmp_path / "b")]) == ExitCode.OK
    [made] = backups(tmp_path / "b")
    dump = made / "database.dump"
    damaged = bytearray(dump.read_bytes())
    damaged[-1] ^= 0xFF
    dump.write_bytes(bytes(damaged))

    assert main(["restore", str(made)]) == ExitCode.REFUSED
    assert "database.dump does not match its sha256" in one_error_line(capsys)


def test_backup_without_a_database_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUNG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    settings_module.get_settings.cache_clear()

    code = main(["backup", str(tmp_path / "b")])

    settings_module.get_settings.cache_clear()
    assert code == ExitCode.DATABASE_UNAVAILABLE
    assert "database unavailable" in one_error_line(capsys)
    assert not list((tmp_path / "b").iterdir())  # no half-made backup left behind


def test_restore_onto_an_empty_database_and_home(
    settings: Settings,
    tmp_path: Path,
    empty_pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (settings.secrets_dir / "site.key").parent.mkdir(parents=True, exist_ok=True)
    (settings.secrets_dir / "site.key").write_bytes(b"k" * 32)
    assert main(["backup", str(tmp_path / "b")]) == ExitCode.OK
    counts = db.row_counts(db.get_engine(settings))
    monkeypatch.setenv("LUNG_HOME", str(tmp_path / "new-home"))
    monkeypatch.setenv("DATABASE_URL", empty_pg_url)
    settings_module.get_settings.cache_clear()
    capsys.readouterr()

    code = main(["restore", str(tmp_path / "b")])

    out = capsys.readouterr().out
    restored = settings_module.get_settings()
    assert code == ExitCode.OK and "dashboard role lung_dashboard logs in" in out
    assert db.row_counts(db.get_engine(restored)) == counts
    assert (restored.secrets_dir / "site.key").read_bytes() == b"k" * 32


def test_artifacts_outside_lung_home_are_named_in_a_warning(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An experiment made before the SQLite store always got its artifact root keeps its
    artifacts elsewhere (MLflow's ./mlruns); the backup says they are not in it."""
    import mlflow

    from lung_model.platform.tracking import configure_mlflow

    configure_mlflow(settings)
    elsewhere = mlflow.create_experiment("made-elsewhere", str(tmp_path / "mlruns"))
    with mlflow.start_run(experiment_id=elsewhere):
        mlflow.log_text("a model's file", "model/notes.txt")

    assert main(["backup", str(tmp_path / "b")]) == ExitCode.OK

    err = capsys.readouterr().err
    assert f"warning: MLflow artifacts outside {settings.artifact_root()}" in err
    assert str(tmp_path / "mlruns") in err
