"""The `lung_retrain` DAG's tasks, one plain function each, exchanging small JSON values.

audit_data -> split_data -> train -> evaluate -> register_challenger -> gate ->
confirm_promotion | record_rejection -> outcome. Each wraps the training code (audit, split,
training, registry, promotion) so a task can run on any worker: inputs are a data folder,
run ids and version numbers, never in-memory objects. The audit and split run first as their
own tasks so bad data fails fast and visibly; `train` repeats them inside its MLflow run (they
are deterministic) so the run records exactly what it trained on.
See https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/taskflow.html
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from lung_model.settings import Settings, get_settings

log = logging.getLogger(__name__)


HEADLINE = (  # the evaluation the DAG passes on (everything else stays in the MLflow run)
    "test_accuracy", "test_macro_f1", "test_recall_", "test_ece", "test_roc_auc_macro", "test_n",
)  # fmt: skip


class DataIntegrityError(RuntimeError):
    """The audit found errors: the data must not be trained on."""


def _data_dir(data_dir: str | None, settings: Settings) -> Path:
    return Path(data_dir) if data_dir else settings.raw_data


def training_config(name: str) -> Any:
    """A named TrainConfig preset: `default` (the real one) or `tiny` (seconds, for tests)."""
    from lung_model.training.fit import TrainConfig

    if name == "default":
        return TrainConfig()
    if name == "tiny":
        if hasattr(TrainConfig, "tiny"):
            return TrainConfig.tiny()
        return TrainConfig(
            epochs=2, min_epochs=1, patience=1, image_size=32, batch_size=8,
            widths=(4, 8), augment=False, bootstrap_rounds=10,
        )  # fmt: skip
    raise ValueError(f"unknown training config {name!r} (default, tiny)")


def pull_data(data_dir: str | None = None) -> str:
    """Restore data/raw from the DVC remote at the committed version; return that version.
    A run given another data folder (`data_dir`) trains on what is there: nothing to pull."""
    from lung_model.data.dvc import pull

    if data_dir:
        log.info("data folder %s given: not pulling data/raw", data_dir)
        return f"folder:{data_dir}"
    return pull()


def audit_data(data_dir: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Audit the labelled data; raise DataIntegrityError when it must not be used."""
    from lung_model.data.audit import audit, inspect

    settings = settings or get_settings()
    report = audit(inspect(_data_dir(data_dir, settings)))
    if report["errors"]:
        raise DataIntegrityError(
            f"{len(report['errors'])} errors: " + "; ".join(report["errors"][:5])
        )
    for warning in report["warnings"]:
        log.warning("audit: %s", warning)
    keys = ("data_version", "n_files", "n_readable", "class_counts", "warnings")
    return {key: report[key] for key in keys if key in report}


def split_data(data_dir: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """The group-aware split: check no group crosses it; return its counts."""
    from lung_model.data.audit import inspect
    from lung_model.data.split import check, make_split, report

    settings = settings or get_settings()
    split = make_split(inspect(_data_dir(data_dir, settings)))
    check(split)
    summary = report(split)
    summary.pop("test_paths", None)
    return summary


def train(
    config: str = "default", data_dir: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Train, calibrate, evaluate and log one MLflow run; return its ids."""
    from lung_model.platform.tracking import configure_mlflow
    from lung_model.training.job import train_and_log

    settings = settings or get_settings()
    result = train_and_log(settings, training_config(config), _data_dir(data_dir, settings))
    run = configure_mlflow(settings).get_run(result.run_id)
    return {
        "run_id": result.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": result.model_uri,
        "data_version": result.data_version,
        "config": config,
        "train_seconds": round(result.seconds, 1),
    }


def evaluate(trained: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The run's held-out test metrics (group split, with 95% intervals), as logged."""
    from lung_model.platform.tracking import configure_mlflow

    settings = settings or get_settings()
    metrics = configure_mlflow(settings).get_run(trained["run_id"]).data.metrics
    test = {k: round(v, 4) for k, v in sorted(metrics.items()) if k.startswith(HEADLINE)}
    if not test:
        raise RuntimeError(f"run {trained['run_id']} logged no test metrics")
    return {**trained, "test": test}


def register_challenger(
    evaluated: dict[str, Any], settings: Settings | None = None
) -> dict[str, Any]:
    """Register the run's model; it becomes the `challenger`."""
    from lung_model.platform.registry import register

    version = register(evaluated["run_id"], settings or get_settings())
    return {**evaluated, "version": version}


def gate(
    registered: dict[str, Any], data_dir: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Gate the challenger against the floors and the champion; record the decision."""
    from lung_model.lifecycle.promotion import run_gate

    settings = settings or get_settings()
    decision = run_gate(registered["version"], settings, _data_dir(data_dir, settings))
    return {**registered, **dataclasses.asdict(decision)}


def champion_version(settings: Settings) -> str | None:
    from lung_model.platform.registry import CHAMPION, version_for_alias
    from lung_model.platform.tracking import configure_mlflow

    current = version_for_alias(configure_mlflow(settings), settings.model_name, CHAMPION)
    return str(current.version) if current else None


def confirm_promotion(decided: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """After a `promoted` decision: check the champion alias moved to the candidate."""
    settings = settings or get_settings()
    champion = champion_version(settings)
    if champion != decided["candidate_version"]:
        raise RuntimeError(
            f"gate promoted {decided['candidate_version']} but champion is {champion}"
        )
    return {"champion": champion, "previous": decided.get("champion_version")}


def record_rejection(decided: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """After a `rejected` decision: the champion stays; say why."""
    settings = settings or get_settings()
    log.warning("version %s rejected: %s", decided["candidate_version"], decided["reason"])
    return {"champion": champion_version(settings), "rejected": decided["candidate_version"]}


def outcome(decided: dict[str, Any], settings: Settings | None = None) -> str:
    """One line for people (log, and the alert webhook when configured)."""
    from lung_model.platform.alerts import notify

    message = (
        f"lung_retrain: model version {decided['candidate_version']} {decided['decision']} "
        f"({decided['reason']}); data version {decided.get('data_version', '?')}"
    )
    details = {k: decided.get(k) for k in ("run_id", "candidate_version", "decision")}
    notify(message, details, settings or get_settings())
    return message
