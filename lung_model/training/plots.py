"""The evaluation plots as matplotlib figures: confusion matrix, ROC, reliability, training.

Rendered with the non-interactive Agg backend; the caller saves or logs them
(https://mlflow.org/docs/latest/api_reference/python_api/mlflow.html#mlflow.log_figure).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from lung_model.settings import CLASSES  # noqa: E402
from lung_model.training.calibration import reliability_bins  # noqa: E402


def confusion_figure(
    matrix: np.ndarray | list[list[int]], title: str = "Confusion matrix"
) -> Figure:
    matrix = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        axes.text(j, i, str(value), ha="center", va="center", color=color)
    axes.set_xticks(range(len(CLASSES)), CLASSES)
    axes.set_yticks(range(len(CLASSES)), CLASSES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def _with_diagonal(figure: Figure, axes: Axes, xlabel: str, ylabel: str, title: str) -> Figure:
    """Finish a unit-square plot: the y = x reference, labels, legend."""
    axes.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.legend(loc="best")
    figure.tight_layout()
    return figure


def roc_figure(labels: np.ndarray, probabilities: np.ndarray) -> Figure:
    figure, axes = plt.subplots(figsize=(4.5, 4))
    for i, cls in enumerate(CLASSES):
        positive = labels == i
        if positive.any() and not positive.all():
            fpr, tpr, _ = roc_curve(positive, probabilities[:, i])
            axes.plot(fpr, tpr, label=cls)
    return _with_diagonal(
        figure, axes, "false positive rate", "true positive rate", "ROC, one vs rest"
    )


def reliability_figure(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> Figure:
    mean_conf, accuracy, count = reliability_bins(probabilities, labels, bins)
    centres = (np.arange(bins) + 0.5) / bins
    used = count > 0
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.bar(
        centres[used], accuracy[used], width=1 / bins, edgecolor="k", alpha=0.7, label="accuracy"
    )
    axes.plot(mean_conf[used], accuracy[used], "o", color="C1", label="mean confidence")
    return _with_diagonal(figure, axes, "confidence (top class)", "accuracy", "Reliability")


def training_figure(history: dict[str, list[float]]) -> Figure:
    figure, (loss_axes, score_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, values in history.items():
        target = loss_axes if "loss" in key else score_axes
        if "loss" in key or "f1" in key or "accuracy" in key:
            target.plot(range(1, len(values) + 1), values, label=key)
    loss_axes.set_title("loss")
    score_axes.set_title("accuracy / macro-F1")
    for axes in (loss_axes, score_axes):
        axes.set_xlabel("epoch")
        axes.legend()
    figure.tight_layout()
    return figure


def invariance_figure(per_perturbation: dict[str, dict[str, float]]) -> Figure:
    """The acquisition-invariance check (`lung_model.training.invariance`): per perturbation,
    the share of slice calls changed, of normal slices called malignant and of malignant
    slices found."""
    names = list(per_perturbation)
    shown = {
        "calls changed": "calls_changed",
        "normal → malignant": "normal_as_malignant",
        "malignant recall": "recall_malignant",
    }
    figure, axes = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(shown)
    for k, (label, key) in enumerate(shown.items()):
        values = [per_perturbation[n][key] for n in names]
        axes.bar(np.arange(len(names)) + k * width, values, width, label=label)
    axes.set_xticks(np.arange(len(names)) + width, names, rotation=20)
    axes.set_ylim(0, 1.25)  # the legend's row above the recall bars, which reach 1
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_title("Test slices under other acquisitions")
    axes.legend(fontsize="small", loc="upper center", ncol=len(shown))
    figure.tight_layout()
    return figure
