"""Why the model said what it said about one slice, for the study view and "try a scan".

CNN models: a Grad-CAM overlay from `lung_model.scoring.gradcam.gradcam` on the slice exactly
as the model saw it (the model's own preprocessing, `LoadedModel.prepare`), drawn over that
same padded, resized image and cached as PNG under `LUNG_HOME/cache/gradcam/<model>/<version>/`,
keyed by the slice's sha256 and the class, so a slice explained twice costs one Grad-CAM.
See https://keras.io/examples/vision/grad_cam/

Lung-field feature models (`LoadedModel.family == "features"`): the nodule candidates the
model measured (`lung_model.imaging.features.nodule_candidates`, the structures behind its
nod_ features) outlined on the full slice, and the features that pushed the slice's raw score
for a class most, up and down: exact TreeSHAP contributions (`SliceFeatureModel.
contributions`, LightGBM's `pred_contrib`), which add up, with the expected value, to the
slice's raw score (log-odds, before temperature scaling).
See https://lightgbm.readthedocs.io/en/stable/pythonapi/lightgbm.Booster.html#lightgbm.Booster.predict
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lung_model.imaging.features import Candidate, nodule_candidates
from lung_model.imaging.images import read_gray
from lung_model.settings import Settings

if TYPE_CHECKING:
    from lung_model.scoring.inference import LoadedModel

TOP_FEATURES = 8
TOP_CANDIDATES = 5
OUTLINE_COLOURS = ((255, 64, 64), (255, 196, 0), (0, 200, 255), (64, 230, 64), (255, 64, 255))


def explain_array(model: LoadedModel, model_input: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM overlay (RGB uint8, model input size) for one prepared slice and one class."""
    from lung_model.scoring.gradcam import gradcam, overlay

    heatmap = gradcam(model, model_input, class_index)
    return np.asarray(overlay(np.squeeze(model_input), heatmap), dtype=np.uint8)


def cache_path(settings: Settings, model: LoadedModel, sha256: str, class_index: int) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    folder = settings.home / "cache" / "gradcam" / name / str(model.version)
    return folder / f"{sha256}-{class_index}.png"


def explain_file(
    settings: Settings, model: LoadedModel, path: Path, sha256: str, class_index: int
) -> np.ndarray:
    """Grad-CAM overlay of a stored slice, from the cache when it was computed before."""
    cached = cache_path(settings, model, sha256, class_index)
    if cached.exists():
        return np.asarray(Image.open(cached).convert("RGB"))
    image = explain_array(model, model.prepare_file(path), class_index)
    cached.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    temporary = cached.with_suffix(f".{id(buffer)}.tmp")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(cached)
    return image


@dataclass(frozen=True)
class Contribution:
    feature: str  # the model's name for it, e.g. glcm_homogeneity_d1
    label: str  # for people, e.g. "GLCM homogeneity, distance 1"
    value: float  # the feature's value on this slice
    contribution: float  # its push on the raw score (+ towards the class, - away)


@dataclass(frozen=True)
class FeatureExplanation:
    class_name: str  # the class whose raw score is explained
    outlined: np.ndarray  # RGB uint8, the full slice with the largest candidates outlined
    candidates: list[Candidate]  # those outlined, largest first (numbered 1, 2, ... on it)
    top: list[Contribution]  # the strongest pushes, by |contribution|, strongest first
    others: float  # the summed contributions of every feature not in `top`
    expected_value: float  # the raw score of an average training slice
    raw_score: float  # expected_value + every contribution: this slice's raw score


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_STATISTICS = {
    "max": "maximum",
    "p99": "99th percentile",
    "p95": "95th percentile",
    "mean": "mean",
    "sd": "standard deviation",
}


def readable_feature(name: str) -> str:
    """A feature name of `lung_model.imaging.features.feature_names`, in words."""
    fixed = {
        "nod_largest": "largest dense candidate, share of lung field",
        "nod_top3": "3 largest dense candidates, share of lung field",
        "nod_dense": "dense tissue, share of lung field",
        "int_mean": "lung-field intensity, mean",
        "int_sd": "lung-field intensity, standard deviation",
        "lbp_9": "LBP: non-uniform patterns",
    }
    if name in fixed:
        return fixed[name]
    if match := re.fullmatch(r"nod_n([\d.]+)", name):
        return f"dense candidates over {100 * float(match[1]):g}% of lung field, count"
    if match := re.fullmatch(r"log_s([\d.]+)_(\w+)", name):
        statistic = _STATISTICS.get(match[2], match[2])
        return f"blob response (LoG, sigma {match[1]} px), {statistic}"
    if match := re.fullmatch(r"int_p(\d+)", name):
        return f"lung-field intensity, {_ordinal(int(match[1]))} percentile"
    if match := re.fullmatch(r"glcm_(\w+)_d(\d+)", name):
        return f"GLCM {match[1]}, distance {match[2]}"
    if match := re.fullmatch(r"lbp_(\d)", name):
        return f"LBP: uniform, {match[1]} of 8 neighbours as bright"
    return name


def outline_candidates(gray: np.ndarray, candidates: list[Candidate]) -> np.ndarray:
    """The slice (gray in [0, 1]) as RGB uint8 with each candidate's outline, numbered."""
    base = np.clip(np.asarray(gray, np.float64) * 255, 0, 255).astype(np.uint8)
    image = Image.fromarray(base).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(gray.shape)
    width = max(2, round(side / 256))
    font = ImageFont.load_default(size=max(12, side // 28))
    for number, candidate in enumerate(candidates, start=1):
        colour = OUTLINE_COLOURS[(number - 1) % len(OUTLINE_COLOURS)]
        points = [(c, r) for r, c in candidate.outline]
        draw.line([*points, points[0]], fill=colour, width=width, joint="curve")
        top, _, left, right = candidate.box
        x = right + width if right + side // 20 < gray.shape[1] else max(0, left - side // 20)
        draw.text((x, max(0, top - side // 60)), str(number), fill=colour, font=font)
    return np.asarray(image, dtype=np.uint8)


def explain_features(
    model: LoadedModel,
    gray: np.ndarray,
    class_name: str = "malignant",
    top: int = TOP_FEATURES,
    candidates: int = TOP_CANDIDATES,
) -> FeatureExplanation:
    """A feature model's reasons for one decoded slice (full resolution, as it scores)."""
    if model.family != "features":
        raise TypeError(f"feature explanations need a feature model; this is a {model.family}")
    network = model.network
    x = np.asarray(model.prepare(gray))
    values = np.asarray(network.contributions(x, class_name), dtype=np.float64)
    pushes, expected = values[:-1], float(values[-1])
    strongest = np.argsort(-np.abs(pushes), kind="stable")[:top]
    names = network.feature_names
    shown = [
        Contribution(names[i], readable_feature(names[i]), float(x[i]), float(pushes[i]))
        for i in strongest
    ]
    found = nodule_candidates(gray, network.features)[:candidates]
    return FeatureExplanation(
        class_name=class_name,
        outlined=outline_candidates(gray, found),
        candidates=found,
        top=shown,
        others=float(pushes.sum() - pushes[strongest].sum()),
        expected_value=expected,
        raw_score=float(values.sum()),
    )


def explain_features_file(
    model: LoadedModel, path: Path, class_name: str = "malignant"
) -> FeatureExplanation:
    """`explain_features` of a stored slice, decoded as the model decodes it for scoring."""
    return explain_features(model, read_gray(path, reduce_to=model.reduce_to).gray, class_name)
