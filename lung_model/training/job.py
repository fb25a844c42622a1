"""The training job: audit, split, fit, calibrate, evaluate, and log it all to one MLflow run.

`train_and_log` returns the run id; `lung_model.platform.registry.register` turns the logged model
into a registered version and `lung_model.lifecycle.promotion.run_gate` decides on it. The
`train` command runs the three in order (`python -m lung_model train`), as the retrain DAG
does task by task.
Either model family fits (`lung_model.training.families`). Logged: parameters, metrics (test
and validation, with 95% intervals, slice and study level), per-epoch curves (CNN), plots,
the acquisition-invariance check on the test split (`lung_model.training.invariance`: calls
changed under other acquisitions, the nuisance-only baseline, the noise-matched AUC),
the audit and split reports, the data version and git commit, and the model with its
decision rules, a signature and an input example (`lung_model.training.served`).
See https://mlflow.org/docs/latest/ml/tracking/
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lung_model.data.audit import audit, inspect, require_clean
from lung_model.data.marks import marked_split
from lung_model.data.split import Split, make_split, report
from lung_model.imaging.acquisition import (
    acquisition_range,
    coarse_noise_level,
    measure,
    measurement_table,
)
from lung_model.imaging.images import read_gray
from lung_model.platform.orphan_runs import end_orphans_of, owner_tags
from lung_model.platform.registry import SPLIT_ARTIFACT
from lung_model.settings import CLASSES, PROJECT_ROOT, Settings
from lung_model.training import invariance, metrics, plots
from lung_model.training.families import FamilyFit, Measured, ModelConfig, fit_family
from lung_model.training.feature_model import FeatureModelConfig
from lung_model.training.fit import Part, TrainConfig

log = logging.getLogger(__name__)


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "default": FeatureModelConfig,  # the family grouped cross-validation favours (README)
    "tiny": FeatureModelConfig.tiny,  # seconds: tests and smoke runs
    "cnn": TrainConfig,
    "cnn-tiny": TrainConfig.tiny,
}


def preset(name: str) -> ModelConfig:
    """A named training configuration (`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown training config {name!r} ({', '.join(PRESETS)})")
    return PRESETS[name]()


def family_of(config: ModelConfig) -> str:
    return "features" if isinstance(config, FeatureModelConfig) else "cnn"


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
    part: Part, probabilities: np.ndarray, name: str, rounds: int, fitted: FamilyFit
) -> dict[str, Any]:
    import mlflow

    result = metrics.evaluate(
        part.y, probabilities, part.groups, rounds, fitted.malignant_threshold, fitted.study_rule
    )
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
    }
    if history:
        figures["plots/training_curves.png"] = plots.training_figure(history)
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plt.close(figure)


def training_acquisition(
    split: Split,
    data_dir: Path,
    seen: Callable[[np.ndarray], np.ndarray] | None = None,
    measured: list[Measured] | None = None,
) -> tuple[dict[str, list[float]], invariance.NuisanceReference]:
    """Over the training and validation slices, decoded at full resolution as serving decodes
    them: the range of their acquisition measurements (`lung_model.imaging.acquisition`),
    shipped with the model so scoring can say when a study is unlike what it learned from;
    and the measurements of the slices as the model sees them (`seen`: harmonised) and as
    exported, with their labels: what the nuisance-only baselines of the invariance check
    learn from.
    `measured`: those measurements when the fit took them (`FamilyFit.fit_measured`), in
    order; else the slices are decoded and measured here."""
    paths = [*split.paths("train"), *split.paths("val")]
    if measured is None:
        measured = []
        for p in paths:
            gray = read_gray(data_dir / p).gray
            shown = gray if seen is None else seen(gray)
            measured.append((measure(gray), measure(shown), coarse_noise_level(shown)))
    raw_side, model_side = [m[0] for m in measured], [m[1] for m in measured]
    labels = np.array([CLASSES.index(split.label[p]) for p in paths])
    reference = invariance.NuisanceReference(
        measurement_table(model_side), measurement_table(raw_side), labels,
        np.array([m[2] for m in measured]),
    )  # fmt: skip
    return acquisition_range(raw_side), reference


def _log_invariance(
    split: Split,
    data_dir: Path,
    fitted: FamilyFit,
    reference: invariance.NuisanceReference,
    base: np.ndarray | None = None,
) -> dict[str, Any]:
    """The acquisition-invariance check on the test split (`lung_model.training.invariance`):
    metrics test_invariance_*, test_nuisance_auc_malignant, test_nuisance_export_auc_malignant,
    test_nuisance_coarse_auc_malignant, test_noise_matched_*, the report
    and a plot. `base`: the test slices' probabilities, when they are what the check would
    compute (not prepared again)."""
    import matplotlib.pyplot as plt
    import mlflow

    paths = split.paths("test")
    grays = [read_gray(data_dir / p).gray for p in paths]
    labels = np.array([CLASSES.index(split.label[p]) for p in paths])
    groups = np.array([split.group[p] for p in paths])
    seen = fitted.seen or (lambda gray: gray)
    result = invariance.check(
        grays, labels, groups, fitted.prepare, fitted.predict, fitted.malignant_threshold,
        fitted.study_rule, seen, reference, base,
    )  # fmt: skip
    mlflow.log_metrics(invariance.flatten(result, "test"))
    mlflow.log_dict(result, "reports/test_invariance.json")
    figure = plots.invariance_figure(result["perturbations"])
    mlflow.log_figure(figure, "plots/invariance.png")
    plt.close(figure)
    return result


def train_and_log(
    settings: Settings,
    config: ModelConfig | None = None,
    data_dir: Path | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Run the whole training job in one MLflow run; raise DataIntegrityError on bad data."""
    import mlflow

    from lung_model.platform.tracking import configure_mlflow

    started = time.monotonic()
    config = config or preset("default")
    data_dir = data_dir or settings.raw_data
    configure_mlflow(settings)
    for orphan in end_orphans_of(settings, "the next training run").ended:
        log.warning("ended orphaned run %s as KILLED: %s", orphan.run_id, orphan.reason)
    progress = sys.stderr.isatty() if progress is None else progress
    inventory = inspect(data_dir, progress=progress)
    audit_report = require_clean(audit(inventory))
    marks = marked_split(make_split(inventory), data_dir)  # reviewers' lesion marks
    split = marks.split
    # who runs it, from its first moment: a later look ends it as KILLED if this process dies
    with mlflow.start_run(run_name=f"train-{split.data_version[:8]}", tags=owner_tags()) as run:
        mlflow.set_tags(
            {
                "data_version": split.data_version,
                "git_commit": git_commit(),
                "data_dir": str(data_dir),
                "job": "train",
            }
        )
        mlflow.log_params({"family": family_of(config), **config.params()})
        mlflow.log_params({"marks_no_lesion": marks.treatment})
        mlflow.log_metrics(marks.metrics())
        mlflow.log_dict(audit_report, "reports/audit.json")
        mlflow.log_text(split.to_json(), SPLIT_ARTIFACT)
        mlflow.log_dict(report(split), "reports/split_report.json")
        fitted = fit_family(config, split, data_dir, progress, marks.points)
        for step, values in enumerate(zip(*fitted.history.values(), strict=True)):
            names = [f"epoch_{name}" for name in fitted.history]  # apart from the final metrics
            mlflow.log_metrics(dict(zip(names, values, strict=True)), step=step + 1)
        mlflow.log_metrics({"temperature": fitted.temperature, "best_epoch": fitted.best_epoch})
        threshold = fitted.malignant_threshold
        if threshold is not None:
            mlflow.log_metric("malignant_threshold", threshold)
        parts = fitted.parts
        probabilities = {p: fitted.predict(parts[p].x) for p in ("val", "test")}
        _log_evaluation(parts["val"], probabilities["val"], "val", 0, fitted)
        test = _log_evaluation(
            parts["test"], probabilities["test"], "test", config.bootstrap_rounds, fitted
        )
        _log_plots(parts["test"], probabilities["test"], test, fitted.history)
        ranges, reference = training_acquisition(split, data_dir, fitted.seen, fitted.fit_measured)
        base = probabilities["test"] if fitted.prepared_at_full_resolution else None
        _log_invariance(split, data_dir, fitted, reference, base)
        model_uri = fitted.log_model(
            {
                "data_version": split.data_version,
                "temperature": fitted.temperature,
                "malignant_threshold": threshold,  # the decision rules serving applies
                "study_rule": fitted.study_rule.to_dict(),
                "acquisition_range": ranges,
            }
        )
        mlflow.set_tag("model_uri", model_uri)
        seconds = time.monotonic() - started
        mlflow.log_metric("train_seconds", seconds)
        log.info("run %s: model %s", run.info.run_id, model_uri)
    return TrainResult(run.info.run_id, model_uri, split.data_version, test, seconds)
