"""Apply promotion decisions: gate a challenger, operator override, rollback; record each one.

`run_gate` evaluates the challenger and the current champion through the serving path
(`lung_model.scoring.inference`) on the challenger's fixed test split, asks `lung_model.lifecycle.gate.decide`,
moves the `champion` alias when it promotes, and records every decision twice: as tags on
the model version (`gate.*`) and as a row in `promotion_events`. Each new champion remembers
the one it replaced (`previous_champion` tag), which is where `rollback` goes back to.
See https://mlflow.org/docs/latest/api_reference/python_api/mlflow.client.html
"""

from __future__ import annotations

import getpass
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from lung_model.data.dvc import sha256_of
from lung_model.data.split import Split
from lung_model.lifecycle.gate import GATED, Floors, decide
from lung_model.platform import db
from lung_model.platform.registry import CHAMPION, SPLIT_ARTIFACT, latest_version, version_for_alias
from lung_model.platform.tracking import configure_mlflow
from lung_model.settings import Settings
from lung_model.training.metrics import HEADLINE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    decision: str  # promoted, rejected, override, rollback
    reason: str
    candidate_version: str
    champion_version: str | None
    candidate_metrics: dict[str, float | None]
    champion_metrics: dict[str, float | None] | None


def _clean(values: dict[str, Any]) -> dict[str, float | None]:
    """JSON-safe metrics (NaN becomes null)."""
    out: dict[str, float | None] = {}
    for key, value in values.items():
        number = float(value)
        out[key] = None if math.isnan(number) else round(number, 6)
    return out


def load_split(client: Any, version: Any) -> Split:
    import mlflow

    return Split.from_json(mlflow.artifacts.load_text(f"runs:/{version.run_id}/{SPLIT_ARTIFACT}"))


def metrics_on_test_split(
    name: str, version: str, split: Split, data_dir: Path, settings: Settings
) -> dict[str, float | None]:
    """Metrics of one registered version on the split's test slices, through serving: the
    headline figures and the acquisition-invariance check's worst cases (the slices decoded
    at full resolution, perturbed, then prepared by the model as serving prepares them)."""
    from lung_model.imaging.images import read_gray
    from lung_model.scoring.inference import LoadedModel
    from lung_model.settings import CLASSES
    from lung_model.training import invariance, metrics

    paths = split.paths("test")
    changed = [p for p in paths if sha256_of(data_dir / p) != split.sha256[p]]
    if changed:
        raise RuntimeError(
            f"{len(changed)} test files differ from the split's data version, e.g. {changed[0]}"
        )
    classifier = LoadedModel.load(settings, f"models:/{name}/{version}")
    probabilities = classifier.predict_arrays(
        classifier.prepare_files([data_dir / p for p in paths])
    )
    import numpy as np

    labels = np.array([CLASSES.index(split.label[p]) for p in paths])
    groups = np.array([split.group[p] for p in paths])
    result = metrics.evaluate(
        labels,
        probabilities,
        groups,
        rounds=0,
        malignant_threshold=classifier.malignant_threshold,
        study_rule=classifier.study_rule,
    )
    grays = [read_gray(data_dir / p).gray for p in paths]
    base = (  # serving decoded these very slices at full resolution: same probabilities
        probabilities
        if classifier.reduce_to is None
        else classifier.predict_arrays(np.stack([classifier.prepare(g) for g in grays]))
    )
    per = invariance.perturbation_scores(
        grays, labels, groups, classifier.prepare, classifier.predict_arrays,
        classifier.malignant_threshold, classifier.study_rule, base,
    )  # fmt: skip
    worst = invariance.summary(per)
    return _clean(
        {
            **metrics.headline(result),
            "invariance_calls_changed": worst["worst_calls_changed"],
            "invariance_normal_as_malignant": worst["worst_normal_as_malignant"],
        }
    )


def record(decision: Decision, actor: str, settings: Settings) -> None:
    """Tags on the candidate version and one promotion_events row."""
    client = configure_mlflow(settings)
    tags = {
        "gate.decision": decision.decision,
        "gate.reason": decision.reason,
        "gate.actor": actor,
        "gate.champion_version": decision.champion_version or "",
        "gate.candidate_metrics": json.dumps(decision.candidate_metrics),
        "gate.champion_metrics": json.dumps(decision.champion_metrics),
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, decision.candidate_version, key, value)
    with db.get_engine(settings).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO promotion_events (model_name, candidate_version, champion_version,"
                " candidate_metrics, champion_metrics, decision, reason, actor) VALUES (:name,"
                " :candidate, :champion, CAST(:cm AS jsonb), CAST(:pm AS jsonb), :decision,"
                " :reason, :actor)"
            ),
            {
                "name": settings.model_name,
                "candidate": decision.candidate_version,
                "champion": decision.champion_version,
                "cm": json.dumps(decision.candidate_metrics),
                "pm": None
                if decision.champion_metrics is None
                else json.dumps(decision.champion_metrics),
                "decision": decision.decision,
                "reason": decision.reason,
                "actor": actor,
            },
        )
    log.info(
        "%s version %s: %s (%s)",
        settings.model_name,
        decision.candidate_version,
        decision.decision,
        decision.reason,
    )


def _make_champion(client: Any, settings: Settings, version: str, previous: str | None) -> None:
    if previous and previous != version:
        client.set_model_version_tag(settings.model_name, version, "previous_champion", previous)
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)


def run_gate(version: str, settings: Settings, data_dir: Path | None = None) -> Decision:
    """Gate `version` against the floors and the champion on its fixed test split."""
    client = configure_mlflow(settings)
    data_dir = data_dir or settings.raw_data
    name = settings.model_name
    candidate = client.get_model_version(name, version)
    split = load_split(client, candidate)
    candidate_metrics = metrics_on_test_split(name, version, split, data_dir, settings)
    current = version_for_alias(client, name, CHAMPION)
    champion_version = str(current.version) if current else None
    champion_metrics = None
    if champion_version and champion_version != str(version):
        champion_metrics = metrics_on_test_split(name, champion_version, split, data_dir, settings)
    as_floats = {k: v if v is not None else math.nan for k, v in candidate_metrics.items()}
    champion_floats = (
        None
        if champion_metrics is None
        else {k: v if v is not None else math.nan for k, v in champion_metrics.items()}
    )
    verdict = decide(
        {k: as_floats[k] for k in GATED}, champion_floats, Floors.from_settings(settings)
    )
    decision = Decision(
        "promoted" if verdict.promote else "rejected",
        verdict.reason,
        str(version),
        champion_version,
        candidate_metrics,
        champion_metrics,
    )
    if verdict.promote:
        _make_champion(client, settings, str(version), champion_version)
    record(decision, "gate", settings)
    return decision


def _run_metrics(client: Any, settings: Settings, version: str) -> dict[str, float | None]:
    run = client.get_run(client.get_model_version(settings.model_name, version).run_id)
    logged = {f"test_{k}": k for k in HEADLINE}
    logged.update(  # the invariance check's worst cases, as the gate names them
        {
            f"test_invariance_worst_{k}": f"invariance_{k}"
            for k in ("calls_changed", "normal_as_malignant")
        }
    )
    return _clean(
        {name: run.data.metrics[key] for key, name in logged.items() if key in run.data.metrics}
    )


def promote(version: str, reason: str, settings: Settings, actor: str | None = None) -> Decision:
    """Operator override: make `version` (or 'latest') the champion, whatever the gate said."""
    client = configure_mlflow(settings)
    if version == "latest":
        version = latest_version(client, settings.model_name)
    current = version_for_alias(client, settings.model_name, CHAMPION)
    previous = str(current.version) if current else None
    decision = Decision(
        "override",
        reason,
        str(version),
        previous,
        _run_metrics(client, settings, str(version)),
        _run_metrics(client, settings, previous) if previous else None,
    )
    _make_champion(client, settings, str(version), previous)
    record(decision, actor or f"operator:{getpass.getuser()}", settings)
    return decision


def rollback(reason: str, settings: Settings, actor: str | None = None) -> Decision:
    """Give `champion` back to the version the current champion replaced."""
    client = configure_mlflow(settings)
    current = version_for_alias(client, settings.model_name, CHAMPION)
    if current is None:
        raise LookupError(f"{settings.model_name} has no champion to roll back")
    target = current.tags.get("previous_champion")
    if not target:
        raise LookupError(
            f"champion version {current.version} has no previous champion to roll back to"
        )
    decision = Decision(
        "rollback",
        reason,
        target,
        str(current.version),
        _run_metrics(client, settings, target),
        _run_metrics(client, settings, str(current.version)),
    )
    client.set_registered_model_alias(settings.model_name, CHAMPION, target)
    record(decision, actor or f"operator:{getpass.getuser()}", settings)
    return decision
