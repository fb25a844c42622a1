"""The training job: audit, split, fit, calibrate, evaluate, and log it all to one MLflow run.

`train_and_log` returns the run id; `lung_model.platform.registry.register` turns the logged model
into a registered version and `lung_model.lifecycle.promotion.run_gate` decides on it. `cli_train`
runs the three in order (`python -m lung_model train`), as the retrain DAG does task by task.
Logged: parameters, metrics (test and validation, with 95% intervals, slice and study level),
per-epoch curves, plots, the audit and split reports, the data version and git commit, and
the calibrated model with the keras flavour, a signature and an input example.
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.keras.html
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from lung_model.data.audit import audit, inspect, require_clean
from lung_model.data.split import make_split, report
from lung_model.platform.registry import MODEL_ARTIFACT, SPLIT_ARTIFACT
from lung_model.settings import CLASSES, PROJECT_ROOT, Settings
from lung_model.training import metrics, plots
from lung_model.training.calibration import apply_temperature
from lung_model.training.fit import Part, TrainConfig, fit, load_part, predict_logits

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    model_uri: str  # runs:/<run id>/model
    data_version: str
    test: dict[str, Any]  # lung_model.training.metrics.evaluate output
    seconds: float


def git_commit(repo: Path = PROJECT_ROOT) -> str:
    """HEAD's commit, with '-dirty' when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _log_evaluation(
    part: Part, probabilities: np.ndarray, name: str, rounds: int, threshold: float | None
) -> dict[str, Any]:
    import mlflow

    result = metrics.evaluate(part.y, probabilities, part.groups, rounds, threshold)
    mlflow.log_metrics(metrics.flatten(result, name))
    mlflow.log_dict(result, f"reports/{name}_metrics.json")
    return result


def _log_plots(
    test: Part, probabilities: np.ndarray, result: dict[str, Any], history: dict[str, list[float]]
) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    figures = {
        "plots/confusion_matrix.png": plots.confusion_figure(result["confusion"], "Test slices"),
        "plots/confusion_matrix_study.png": plots.confusion_figure(
            result["study_confusion"], "Test studies"
        ),
        "plots/roc.png": plots.roc_figure(test.y, probabilities),
        "plots/reliability.png": plots.reliability_figure(test.y, probabilities),
        "plots/training_curves.png": plots.training_figure(history),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plt.close(figure)


def _keras_flavor() -> Any:
    """`mlflow.keras` with the model folder created before the input example is written into
    it: MLflow's keras `save_model` writes the example first and fails on a fresh folder
    (https://github.com/mlflow/mlflow/issues/16183). `mlflow.keras.log_model` is exactly
    `Model.log(flavor=mlflow.keras, ...)`, so this logs the same keras-flavour model."""
    import mlflow.keras

    def save_model(path: str, **kwargs: Any) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)

    return SimpleNamespace(__name__=mlflow.keras.__name__, save_model=save_model)


def _log_model(model: Any, example: np.ndarray, config: TrainConfig, extra: dict[str, Any]) -> str:
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    info = Model.log(
        artifact_path=None,
        name=MODEL_ARTIFACT,
        flavor=_keras_flavor(),
        model=model,
        signature=signature,
        input_example=example,
        metadata={"preprocess": config.preprocess().to_dict(), "classes": list(CLASSES), **extra},
        pip_requirements=[
            f"tensorflow-cpu=={tf.__version__}",
            f"keras=={keras.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
    )
    return str(info.model_uri)


def train_and_log(
    settings: Settings,
    config: TrainConfig | None = None,
    data_dir: Path | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Run the whole training job in one MLflow run; raise DataIntegrityError on bad data."""
    import mlflow

    from lung_model.platform.tracking import configure_mlflow
    from lung_model.training.network import calibrated

    started = time.monotonic()
    config = config or TrainConfig()
    data_dir = data_dir or settings.raw_data
    configure_mlflow(settings)
    progress = sys.stderr.isatty() if progress is None else progress
    inventory = inspect(data_dir, progress=progress)
    audit_report = require_clean(audit(inventory))
    split = make_split(inventory)
    with mlflow.start_run(run_name=f"train-{split.data_version[:8]}") as run:
        mlflow.set_tags(
            {
                "data_version": split.data_version,
                "git_commit": git_commit(),
                "data_dir": str(data_dir),
                "job": "train",
            }
        )
        mlflow.log_params({**config.params(), "preprocess_version": config.preprocess().version})
        mlflow.log_dict(audit_report, "reports/audit.json")
        mlflow.log_text(split.to_json(), SPLIT_ARTIFACT)
        mlflow.log_dict(report(split), "reports/split_report.json")
        preprocess = config.preprocess()
        parts = {
            p: load_part(split, p, data_dir, preprocess, progress) for p in ("train", "val", "test")
        }
        fitted = fit(config, parts["train"], parts["val"], progress)
        for step, values in enumerate(zip(*fitted.history.values(), strict=True)):
            names = [f"epoch_{name}" for name in fitted.history]  # apart from the final metrics
            mlflow.log_metrics(dict(zip(names, values, strict=True)), step=step + 1)
        mlflow.log_metrics({"temperature": fitted.temperature, "best_epoch": fitted.best_epoch})
        threshold = fitted.malignant_threshold
        if threshold is not None:
            mlflow.log_metric("malignant_threshold", threshold)
        probabilities = {
            p: apply_temperature(predict_logits(fitted.network, parts[p].x), fitted.temperature)
            for p in ("val", "test")
        }
        _log_evaluation(parts["val"], probabilities["val"], "val", 0, threshold)
        test = _log_evaluation(
            parts["test"], probabilities["test"], "test", config.bootstrap_rounds, threshold
        )
        _log_plots(parts["test"], probabilities["test"], test, fitted.history)
        model = calibrated(fitted.network, fitted.temperature)
        extra = {
            "data_version": split.data_version,
            "temperature": fitted.temperature,
            "malignant_threshold": threshold,  # the decision rule serving applies
        }
        model_uri = _log_model(model, parts["test"].x[:1], config, extra)
        mlflow.set_tag("model_uri", model_uri)
        seconds = time.monotonic() - started
        mlflow.log_metric("train_seconds", seconds)
        log.info("run %s: model %s", run.info.run_id, model_uri)
    return TrainResult(run.info.run_id, model_uri, split.data_version, test, seconds)
