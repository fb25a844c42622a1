"""Real tiny models for the tests: trained by the training job on the fixture slices,
registered in a temporary MLflow store (SQLite under its own LUNG_HOME), seconds each."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from lung_model import settings as settings_module
from lung_model.settings import PROJECT_ROOT, Settings

FIXTURE_DATA = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"
FEATURE_RUN = "lung-test-feature-run"  # the session's tiny feature model (conftest.feature_run)
# gate bounds a one-epoch network on the fixture slices clears
LENIENT = {
    "gate_min_malignant_recall": 0.0,
    "gate_min_study_malignant_recall": 0.0,
    "gate_max_normal_as_malignant": 1.0,
    "gate_max_study_normal_as_malignant": 1.0,
    "gate_min_macro_f1": 0.0,
    "gate_max_ece": 1.0,
    "gate_max_invariance_calls_changed": 1.0,
    "gate_max_invariance_normal_as_malignant": 1.0,
}


def store_settings(home: Path, pg_url: str) -> Settings:
    """Settings of the store's owner: MLflow under `home`, results on the test database.
    Never the environment's MLFLOW_TRACKING_URI: MLflow's `set_tracking_uri` exports it, so
    any test that configured MLflow before would otherwise move this store into its own."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None, home=home, database_url=pg_url, mlflow_tracking_uri=None
    )


def use_home(home: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point the process's settings at `home` (LUNG_HOME, its MLflow store) and the database
    `url`, as a deployment's environment would; monkeypatch undoes it after the test."""
    monkeypatch.setenv("LUNG_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings_module.get_settings.cache_clear()
    settings = settings_module.get_settings()
    settings.ensure_dirs()
    return settings


def one_epoch_config() -> object:
    from lung_model.training.fit import TrainConfig

    return replace(TrainConfig.tiny(), epochs=1, min_epochs=0, bootstrap_rounds=10)


def train_and_register(settings: Settings) -> tuple[str, str]:
    """One training run (one epoch, 32 px), registered as the challenger: (run id, version)."""
    from lung_model.platform.registry import register
    from lung_model.training.job import train_and_log

    result = train_and_log(settings, one_epoch_config(), FIXTURE_DATA, progress=False)
    return result.run_id, register(result.run_id, settings)


def train_feature_model(settings: Settings) -> tuple[str, str]:
    """One tiny lung-field feature model (LightGBM, `FeatureModelConfig.tiny`, about 15 s),
    trained by the training job and registered: (run id, version)."""
    from lung_model.platform.registry import register
    from lung_model.training.feature_model import FeatureModelConfig
    from lung_model.training.job import train_and_log

    result = train_and_log(settings, FeatureModelConfig.tiny(), FIXTURE_DATA, progress=False)
    return result.run_id, register(result.run_id, settings)


def tiny_champion(home: Path, pg_url: str) -> dict[str, str]:
    """A champion by operator override (a one-epoch model passes no gate); the environment
    a scorer needs to find it from any LUNG_HOME."""
    from lung_model.lifecycle.promotion import promote

    settings = store_settings(home, pg_url)
    run_id, version = train_and_register(settings)
    promote(version, "reliability tests: a known champion", settings, actor="test")
    return {
        "version": version,
        "run_id": run_id,
        "home": str(home),
        "MLFLOW_TRACKING_URI": settings.tracking_uri(),
        "LUNG_MODEL_NAME": settings.model_name,
    }


@dataclass(frozen=True)
class TrainedRun:
    """One real training run in an MLflow store of its own, shared by the session."""

    home: Path  # LUNG_HOME of the store
    run_id: str
    data_dir: Path  # the slices it was trained and split on

    def settings(self, pg_url: str, model_name: str, **overrides: object) -> Settings:
        """Settings on this store under a model name of the caller's own."""
        return store_settings(self.home, pg_url).model_copy(
            update={"model_name": model_name, **overrides}
        )
