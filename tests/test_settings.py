from pathlib import Path

import pytest

from lung_model.settings import PROJECT_ROOT, Settings


def test_defaults_are_embedded_and_local(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "MLFLOW_TRACKING_URI", "LUNG_HOME", "LUNG_MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.home == PROJECT_ROOT / "var"
    assert settings.database_url is None
    assert settings.model_name == "lung-ct-classifier"
    assert settings.inbox == PROJECT_ROOT / "var" / "inbox"
    assert settings.dvc_remote_url == str(PROJECT_ROOT / "var" / "dvc-remote")
    assert settings.bind_host == "127.0.0.1"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/lung")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("LUNG_HOME", str(tmp_path))
    monkeypatch.setenv("LUNG_GATE_MIN_MALIGNANT_RECALL", "0.99")
    settings = Settings(_env_file=None)
    assert settings.database_url == "postgresql://db.example/lung"
    assert settings.tracking_uri() == "http://mlflow:5000"
    assert settings.quarantine == tmp_path / "quarantine"
    assert settings.gate_min_malignant_recall == 0.99


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUNG_MODEL_NAME", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("LUNG_MODEL_NAME=from-dotenv\n")
    assert Settings(_env_file=env_file).model_name == "from-dotenv"


def test_local_mlflow_store_lives_under_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(_env_file=None, home=tmp_path)
    assert settings.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
