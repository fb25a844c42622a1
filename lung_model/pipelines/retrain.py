"""The `lung_retrain` DAG's tasks, one plain function each, exchanging typed payloads.

pull_data -> audit_data -> split_data -> train -> evaluate -> register_challenger -> gate
-> promote_or_reject -> confirm_promotion | record_rejection -> notify. Each wraps the
training code (audit, split, training job, registry, promotion) so a task can run on any
worker: inputs are a data folder, run ids and version numbers, never in-memory objects.
Steps hand each other frozen, strict pydantic payloads; `Payload.to_xcom` / `from_xcom` are
the one place they become the JSON dicts Airflow stores. The audit and split run first as
their own tasks so bad data fails fast and visibly; `train` repeats them inside its MLflow
run (they are deterministic) so the run records exactly what it trained on.
See https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/taskflow.html
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from lung_model.settings import Settings, get_settings

log = logging.getLogger(__name__)


class Payload(BaseModel):
    """What one retrain step hands the next: frozen, strictly typed, JSON at the DAG edge."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls, value: dict[str, Any]) -> Self:
        return cls.model_validate(value)


class Audited(Payload):
    data_version: str
    n_files: int
    n_readable: int
    class_counts: dict[str, int]
    warnings: list[str]


class SplitCounts(Payload):
    data_version: str
    method: str
    n_groups: int
    slices: dict[str, dict[str, int]]  # part -> class -> slices
    groups: dict[str, dict[str, int]]  # part -> class -> pseudo-patient groups


class Trained(Payload):
    run_id: str
    experiment_id: str
    model_uri: str
    data_version: str
    config: str
    train_seconds: float


class Evaluated(Trained):
    test: dict[str, float]  # headline test metrics with their 95% intervals, as logged


class Registered(Evaluated):
    version: str


class Decided(Registered):
    decision: str  # promoted, rejected
    reason: str
    candidate_version: str
    champion_version: str | None
    candidate_metrics: dict[str, float | None]
    champion_metrics: dict[str, float | None] | None


class Outcome(Payload):
    champion: str | None
    previous: str | None = None
    rejected: str | None = None


def _data_dir(data_dir: str | None, settings: Settings) -> Path:
    return Path(data_dir) if data_dir else settings.raw_data


def pull_data(data_dir: str | None = None) -> str:
    """Restore data/raw from the DVC remote at the committed version; return that version.
    A run given another data folder (`data_dir`) trains on what is there: nothing to pull."""
    from lung_model.data.dvc import pull

    if data_dir:
        log.info("data folder %s given: not pulling data/raw", data_dir)
        return f"folder:{data_dir}"
    return pull()


def audit_data(data_dir: str | None = None, settings: Settings | None = None) -> Audited:
    """Audit the labelled data; raise DataIntegrityError when it must not be used."""
    from lung_model.data.audit import audit, inspect, require_clean

    settings = settings or get_settings()
    report = require_clean(audit(inspect(_data_dir(data_dir, settings))))
    for warning in report["warnings"]:
        log.warning("audit: %s", warning)
    return Audited.model_validate({key: report[key] for key in Audited.model_fields})


def split_data(data_dir: str | None = None, settings: Settings | None = None) -> SplitCounts:
    """The group-aware split, with reviewers' lesion marks applied as training will apply them:
    check no group crosses it; return its counts."""
    from lung_model.data.audit import inspect
    from lung_model.data.marks import marked_split
    from lung_model.data.split import check, make_split, report

    settings = settings or get_settings()
    folder = _data_dir(data_dir, settings)
    split = marked_split(make_split(inspect(folder)), folder).split
    check(split)
    counts = report(split)
    return SplitCounts.model_validate({key: counts[key] for key in SplitCounts.model_fields})


def train(
    config: str = "default", data_dir: str | None = None, settings: Settings | None = None
) -> Trained:
    """Train, calibrate, evaluate and log one MLflow run; return its ids."""
    from lung_model.platform.tracking import configure_mlflow
    from lung_model.training.job import preset, train_and_log

    settings = settings or get_settings()
    result = train_and_log(settings, preset(config), _data_dir(data_dir, settings))
    run = configure_mlflow(settings).get_run(result.run_id)
    return Trained(
        run_id=result.run_id,
        experiment_id=str(run.info.experiment_id),
        model_uri=result.model_uri,
        data_version=result.data_version,
        config=config,
        train_seconds=round(result.seconds, 1),
    )


def evaluate(trained: Trained, settings: Settings | None = None) -> Evaluated:
    """The run's held-out test metrics (group split, with 95% intervals), as logged."""
    from lung_model.platform.tracking import configure_mlflow
    from lung_model.training.metrics import HEADLINE

    settings = settings or get_settings()
    logged = configure_mlflow(settings).get_run(trained.run_id).data.metrics
    prefixes = tuple(f"test_{name}" for name in HEADLINE)
    test = {k: round(v, 4) for k, v in sorted(logged.items()) if k.startswith(prefixes)}
    if not test:
        raise RuntimeError(f"run {trained.run_id} logged no test metrics")
    return Evaluated(**trained.model_dump(), test=test)


def register_challenger(evaluated: Evaluated, settings: Settings | None = None) -> Registered:
    """Register the run's model; it becomes the `challenger`."""
    from lung_model.platform.registry import register

    version = register(evaluated.run_id, settings or get_settings())
    return Registered(**evaluated.model_dump(), version=version)


def gate(
    registered: Registered, data_dir: str | None = None, settings: Settings | None = None
) -> Decided:
    """Gate the challenger against the floors and the champion; record the decision."""
    from lung_model.lifecycle.promotion import run_gate

    settings = settings or get_settings()
    decision = run_gate(registered.version, settings, _data_dir(data_dir, settings))
    return Decided(**registered.model_dump(), **dataclasses.asdict(decision))


def promote_or_reject(decided: Decided) -> str:
    """The task that follows the gate: `confirm_promotion` or `record_rejection`."""
    return "confirm_promotion" if decided.decision == "promoted" else "record_rejection"


def confirm_promotion(decided: Decided, settings: Settings | None = None) -> Outcome:
    """After a `promoted` decision: check the champion alias moved to the candidate."""
    from lung_model.platform.registry import current_champion

    champion = current_champion(settings or get_settings())
    if champion != decided.candidate_version:
        raise RuntimeError(f"gate promoted {decided.candidate_version} but champion is {champion}")
    return Outcome(champion=champion, previous=decided.champion_version)


def record_rejection(decided: Decided, settings: Settings | None = None) -> Outcome:
    """After a `rejected` decision: the champion stays; say why."""
    from lung_model.platform.registry import current_champion

    log.warning("version %s rejected: %s", decided.candidate_version, decided.reason)
    champion = current_champion(settings or get_settings())
    return Outcome(champion=champion, rejected=decided.candidate_version)


def notify(decided: Decided, settings: Settings | None = None) -> str:
    """One line for people (log, and the alert webhook when configured)."""
    from lung_model.platform import alerts

    message = (
        f"lung_retrain: model version {decided.candidate_version} {decided.decision} "
        f"({decided.reason}); data version {decided.data_version}"
    )
    details = {
        "run_id": decided.run_id,
        "candidate_version": decided.candidate_version,
        "decision": decided.decision,
    }
    alerts.notify(message, details, settings or get_settings())
    return message
