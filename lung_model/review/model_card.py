"""The model view: champion and challenger from the MLflow registry, their metrics and
plots, and the promotion history (every gate decision, override and rollback, with reasons).

Versions are found by alias (`@champion`, `@challenger`); metrics are the training run's;
plots are the run's PNG artifacts (confusion matrix, ROC, reliability, training curves, the
acquisition-invariance check), and the invariance check's figures per perturbation beside
the accuracy (`invariance_rows`, `invariance_sentence`),
downloaded once into `LUNG_HOME/cache/mlflow/<run id>/`.
See https://mlflow.org/docs/latest/ml/model-registry/ and
https://mlflow.org/docs/latest/api_reference/python_api/mlflow.client.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from lung_model.lifecycle.gate import Floors
from lung_model.platform.registry import CHALLENGER, CHAMPION
from lung_model.platform.tracking import run_url
from lung_model.settings import Settings
from lung_model.training.metrics import LOWER_IS_BETTER

ALIASES = (CHAMPION, CHALLENGER)
# Shown first: the gate's criteria on the fixed test split (training logs them as test_*).
KEY_METRICS = (
    "test_recall_malignant",
    "test_recall_malignant_ci_low",
    "test_macro_f1",
    "test_macro_f1_ci_low",
    "test_macro_f1_ci_high",
    "test_ece",
    "test_accuracy",
    "test_roc_auc_macro",
    "test_study_macro_f1",
    # the acquisition-invariance check beside the accuracy (lung_model.training.invariance)
    "test_roc_auc_malignant",
    "test_nuisance_auc_malignant",
    "test_nuisance_export_auc_malignant",
    "test_nuisance_coarse_auc_malignant",
    "test_noise_matched_auc_malignant",
    "test_invariance_worst_calls_changed",
    "test_invariance_worst_normal_as_malignant",
    "test_invariance_worst_recall_malignant",
)
_HISTORY = text("""
SELECT id, created_at, decision, candidate_version, champion_version, reason, actor,
       candidate_metrics, champion_metrics
FROM promotion_events WHERE model_name = :model_name
ORDER BY created_at DESC, id DESC LIMIT :limit
""")


@dataclass
class ModelCard:
    alias: str
    version: str
    run_id: str | None
    created: int | None  # registry timestamp, ms since the epoch
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str]
    run_url: str | None
    plots: list[Path] = field(default_factory=list)

    def key_metrics(self) -> dict[str, float]:
        """The gate's metrics present in this run, in a fixed order."""
        return {name: self.metrics[name] for name in KEY_METRICS if name in self.metrics}


def promotion_history(engine: Engine, model_name: str, limit: int = 200) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(_HISTORY, {"model_name": model_name, "limit": limit})
        return [dict(row) for row in rows.mappings()]


def _plots(client: Any, settings: Settings, run_id: str) -> list[Path]:
    """The run's PNG artifacts (searched two folders deep), downloaded once."""
    target = settings.home / "cache" / "mlflow" / run_id
    found: list[str] = []
    stack = [""]
    while stack:
        folder = stack.pop()
        for item in client.list_artifacts(run_id, folder or None):
            if item.is_dir and item.path.count("/") < 2:
                stack.append(item.path)
            elif item.path.lower().endswith(".png"):
                found.append(item.path)
    paths = []
    for artifact in sorted(found):
        local = target / artifact
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_artifacts(run_id, artifact, str(local.parent))
        paths.append(local)
    return paths


def model_cards(settings: Settings) -> list[ModelCard]:
    """Champion and challenger, whichever exist (an empty list before the first training);
    a challenger that is the champion's own version is not shown twice."""
    from mlflow.exceptions import MlflowException

    from lung_model.platform.tracking import configure_mlflow

    client = configure_mlflow(settings)
    cards: list[ModelCard] = []
    for alias in ALIASES:
        try:
            version = client.get_model_version_by_alias(settings.model_name, alias)
        except MlflowException:
            continue
        if cards and str(version.version) == cards[0].version:
            continue  # the challenger became champion: one model, shown once
        card = ModelCard(
            alias=alias,
            version=str(version.version),
            run_id=version.run_id,
            created=version.creation_timestamp,
            tags=dict(version.tags or {}),
            metrics={},
            params={},
            run_url=None,
        )
        if version.run_id:
            run = client.get_run(version.run_id)
            card.metrics = dict(run.data.metrics)
            card.params = dict(run.data.params)
            card.run_url = run_url(settings.mlflow_ui_url, run.info.experiment_id, version.run_id)
            card.plots = _plots(client, settings, version.run_id)
        cards.append(card)
    return cards


RUN_STATES = {"RUNNING": "in progress", "SCHEDULED": "scheduled", "FINISHED": "finished"}


def training_runs(settings: Settings, limit: int = 10) -> list[dict[str, Any]]:
    """The latest training runs, newest first. Orphaned runs (their process is gone) are
    ended as KILLED first, so a killed training never shows as in progress."""
    from lung_model.platform.orphan_runs import REASON_TAG, end_orphans_of
    from lung_model.platform.tracking import configure_mlflow

    client = configure_mlflow(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        return []
    end_orphans_of(settings, "the dashboard's Model page")
    found = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=limit
    )
    return [
        {
            "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC),
            "run": run.info.run_name,
            "state": RUN_STATES.get(run.info.status, run.info.status.lower()),
            "why": run.data.tags.get(REASON_TAG, ""),
            "marked slices": run.data.metrics.get("marked_slices"),  # reviewers' lesion marks
            "marked studies": run.data.metrics.get("marked_studies"),
            "link": run_url(settings.mlflow_ui_url, experiment.experiment_id, run.info.run_id),
        }
        for run in found
    ]


# The gate's metrics with their floor (>=) or ceiling (<=), then the rest, with plain names.
METRIC_NAMES = {
    "recall_malignant": "malignant recall",
    "study_recall_malignant": "malignant recall (studies)",
    "normal_as_malignant": "normal slices called malignant",
    "study_normal_as_malignant": "normal studies called malignant",
    "macro_f1": "macro-F1",
    "ece": "calibration error (ECE)",
    "study_macro_f1": "macro-F1 per study",
    "accuracy": "accuracy",
    "recall_normal": "normal recall",
    "recall_benign": "benign recall",
    "roc_auc_macro": "ROC AUC (macro)",
    "n": "test slices",
    "invariance_calls_changed": "calls changed by another acquisition (worst)",
    "invariance_normal_as_malignant": "normal slices called malignant, another acquisition (worst)",
}
# the acquisition-invariance check's figures per perturbation (training logs them as
# test_invariance_<perturbation>_<figure>)
INVARIANCE_COLUMNS = {
    "calls_changed": "calls changed",
    "median_abs_delta_malignant": "median |Δ p(malignant)|",
    "recall_malignant": "malignant recall",
    "normal_as_malignant": "normal slices → malignant",
    "study_normal_as_malignant": "normal studies → malignant",
}


def invariance_rows(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One row per perturbation of a training run's acquisition-invariance check (its test
    split under another scanner, kernel or export): empty for runs logged before it."""
    from lung_model.imaging.acquisition import PERTURBATIONS

    rows = []
    for name in PERTURBATIONS:
        values = {
            label: metrics.get(f"test_invariance_{name}_{figure}")
            for figure, label in INVARIANCE_COLUMNS.items()
        }
        if any(v is not None for v in values.values()):
            rows.append({"acquisition": name.replace("_", " "), **values})
    return rows


def invariance_sentence(metrics: dict[str, float], floors: Floors) -> str | None:
    """What the invariance check found for a run, in words (None before it existed)."""
    changed = metrics.get("test_invariance_worst_calls_changed")
    if changed is None:
        return None
    normal = metrics.get("test_invariance_worst_normal_as_malignant", float("nan"))
    parts = [
        f"Under another acquisition at most {changed:.0%} of its test-slice calls change "
        f"(gate: {floors.max_invariance_calls_changed:.0%}) and at most {normal:.0%} of normal "
        f"slices are called malignant (gate: {floors.max_invariance_normal_as_malignant:.0%})."
    ]
    nuisance = metrics.get("test_nuisance_auc_malignant")
    auc = metrics.get("test_roc_auc_malignant")
    if nuisance is not None and auc is not None:
        parts.append(
            f"Its malignant ROC-AUC is {auc:.3f}; the acquisition measurements alone reach "
            f"{nuisance:.3f} on its inputs (0.5: nothing of the export left to read)."
        )
    export = metrics.get("test_nuisance_export_auc_malignant")
    if export is not None:
        parts.append(
            f"The export's measurements alone (the noise and window of what it reads, the "
            f"slice's matrix) reach {export:.3f}."
        )
    coarse = metrics.get("test_nuisance_coarse_auc_malignant")
    if coarse is not None:
        parts.append(
            f"With the noise one scale up (of 2 x 2 block means, where an export's noise "
            f"outlasts the harmonisation; fine anatomy counts there too): {coarse:.3f}."
        )
    matched = metrics.get("test_noise_matched_auc_malignant")
    if matched is not None:
        parts.append(f"On noise-matched test patients its malignant ROC-AUC is {matched:.3f}.")
    return " ".join(parts)


def decision_sentence(event: dict[str, Any]) -> str:
    """One promotion event in words."""
    when = f"{event['created_at']:%Y-%m-%d %H:%M}"
    version, previous = event["candidate_version"], event["champion_version"]
    actor, reason = event["actor"], event["reason"]
    if event["decision"] == "promoted":
        over = f" over version {previous}" if previous else ""
        return f"{when}: the gate promoted version {version}{over}: {reason}."
    if event["decision"] == "rejected":
        kept = f"; version {previous} stayed champion" if previous else "; no champion yet"
        return f"{when}: the gate rejected version {version}{kept}: {reason}."
    if event["decision"] == "override":
        replacing = f", replacing version {previous}" if previous else ""
        return (
            f"{when}: {actor} made version {version} champion by operator override{replacing}, "
            f"without the gate's approval: {reason}."
        )
    return f"{when}: {actor} rolled back from version {previous} to version {version}: {reason}."


def metrics_table(event: dict[str, Any], floors: Floors) -> list[dict[str, Any]]:
    """Candidate and champion metrics of one decision side by side, with the gate's limits."""
    limits = {  # every bound the gate checks (lifecycle.gate), not only the first three
        name: f"{'<=' if name in LOWER_IS_BETTER else '>='} {bound:.2f}"
        for name, bound in floors.bounds().items()
    }
    candidate = event.get("candidate_metrics") or {}
    champion = event.get("champion_metrics") or {}
    names = [n for n in METRIC_NAMES if n in candidate or n in champion]
    names += sorted((set(candidate) | set(champion)) - set(names))
    ours = f"version {event['candidate_version']}"
    theirs = f"version {event['champion_version']} (champion then)"
    rows = []
    for name in names:
        row = {"metric": METRIC_NAMES.get(name, name), ours: candidate.get(name)}
        if event["champion_version"]:
            row[theirs] = champion.get(name)
        rows.append({**row, "gate": limits.get(name, "")})
    return rows
