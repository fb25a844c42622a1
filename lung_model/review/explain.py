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
slice's raw score (log-odds, before temperature scaling). `Reading` says in plain words what
the pushes towards the class rest on: the nodule-candidate features (then it names the
candidate they measure, outlined thicker: the largest dense structure), blob responses, or
whole-slice texture and intensity, which in this release follow how a scan was exported as
much as the disease (issue 19), and the explanation says so when they carry most of it.
When a reviewer has marked the slice (`lung_model.review.marks`), `MarkReading` puts the mark
beside the candidates (drawn as a blue ring and cross) and says whether the candidate behind
the score is at the marked lesion (the one training would measure for the mark,
`lung_model.imaging.features.candidate_at_mark`, outlined too when smaller than the others),
how far from it (slice pixels, and mm when the DICOM gives its pixel spacing), or that the
reviewer saw no lesion on the slice.
See https://lightgbm.readthedocs.io/en/stable/pythonapi/lightgbm.Booster.html#lightgbm.Booster.predict
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lung_model.imaging.features import (
    Candidate,
    LesionPoint,
    candidate_at_mark,
    nodule_candidates,
)
from lung_model.imaging.images import read_gray
from lung_model.review.marks import draw_mark
from lung_model.settings import Settings

if TYPE_CHECKING:
    from lung_model.scoring.inference import LoadedModel

TOP_FEATURES = 8
TOP_CANDIDATES = 5
OUTLINE_COLOURS = ((255, 64, 64), (255, 196, 0), (0, 200, 255), (64, 230, 64), (255, 64, 255))
REVIEWER_COLOUR = (40, 90, 255)  # the reviewer's mark, apart from every candidate's colour


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


# what the feature groups of `lung_model.imaging.features` look at, for people
LESION, BLOB, TEXTURE = "nodule candidates", "blob responses", "whole-slice texture"
OTHER = "other features"
GROUPS = {"nod": LESION, "log": BLOB, "int": TEXTURE, "glcm": TEXTURE, "lbp": TEXTURE}
MOSTLY = 0.5  # a share of the push towards the class above this is "mostly"
LESION_DRIVES = 0.25  # the nodule-candidate features' least share to name their candidate


@dataclass(frozen=True)
class Reading:
    """What a slice's push towards one class rests on."""

    shares: dict[str, float]  # of the summed positive pushes: LESION, BLOB, TEXTURE, OTHER
    driver: int | None  # the outlined candidate (1: the largest) behind the lesion push
    text: str


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"


def read_pushes(
    names: list[str], pushes: np.ndarray, candidates: list[Candidate], class_name: str
) -> Reading:
    """Which feature groups push the slice's `class_name` score up, in plain words, and the
    lesion candidate that drives it when the nodule-candidate features carry enough of it
    (`LESION_DRIVES`): the largest dense structure, which nod_largest and nod_top3 measure."""
    up = np.clip(np.asarray(pushes, dtype=np.float64), 0.0, None)
    shares = dict.fromkeys((LESION, BLOB, TEXTURE, OTHER), 0.0)
    for name, push in zip(names, up, strict=True):
        shares[GROUPS.get(name.split("_", 1)[0], OTHER)] += float(push)
    total = sum(shares.values())
    if total <= 0:
        text = (
            f"Nothing on this slice pushes its {class_name} score up: it is below an average"
            " training slice's."
        )
        return Reading(shares, None, text)
    shares = {group: push / total for group, push in shares.items()}
    lesion, blob, texture = shares[LESION], shares[BLOB], shares[TEXTURE]
    driver = 1 if candidates and lesion >= LESION_DRIVES else None
    split = (
        f"nodule candidates {_percent(lesion)}, blob responses {_percent(blob)}, whole-slice"
        f" texture and intensity {_percent(texture)}"
        + (f", other features {_percent(shares[OTHER])}" if shares[OTHER] else "")
        + " of what pushes it up"
    )
    if texture > MOSTLY:
        text = (
            f"This {class_name} score rests mostly on whole-slice texture and intensity, not on"
            f" a lesion ({split}). Texture and intensity follow how a scan was exported as much"
            " as the disease: look for the lesion yourself."
        )
    elif driver is not None:
        text = (
            f"Lesion candidate 1 (outlined thicker, {_percent(candidates[0].share)} of the lung"
            f" field) drives this {class_name} score: the nodule-candidate features measure it"
            f" ({split})."
        )
    else:
        text = f"No single lesion candidate drives this {class_name} score ({split})."
    return Reading(shares, driver, text)


@dataclass(frozen=True)
class MarkReading:
    """A reviewer's mark of the explained slice beside the model's candidates."""

    point: LesionPoint | None  # the marked lesion in the explained image's pixels
    at_mark: int | None  # the outlined candidate (number) at the marked lesion, if any
    distance_px: float | None  # marked centre to the driving candidate (0: on it), slice px
    distance_mm: float | None  # the same in mm, when the pixel spacing is known
    # is the candidate behind the score the marked lesion (False on a slice marked without
    # one); None when no candidate drives the score
    driver_at_mark: bool | None
    text: str


def _length(pixels: float, mm: float | None) -> str:
    return f"{pixels:.0f} px" + ("" if mm is None else f" ({mm:.1f} mm)")


def mark_point(
    mark: dict[str, Any], shape: tuple[int, int], size: tuple[int, int]
) -> LesionPoint | None:
    """A reviewer's lesion `mark` (a `review.marks.current_marks` row: kind, x, y, radius in
    the slice's own pixels, `size` = its width and height) in the pixels of the explained
    image (`shape` rows, columns); None for a mark of no lesion."""
    if mark["kind"] != "lesion":
        return None
    radius = None if mark["radius"] is None else float(mark["radius"])
    marked = LesionPoint(float(mark["x"]), float(mark["y"]), radius)
    return marked.scaled((size[1], size[0]), shape)


def _distances(candidates: list[Candidate]) -> list[float]:
    """The candidates' distances from the mark they were measured from."""
    distances = [c.distance for c in candidates]
    if any(d is None for d in distances):
        raise ValueError("the candidates were not measured from the mark")
    return [float(d) for d in distances if d is not None]


def read_mark(
    mark: dict[str, Any],
    candidates: list[Candidate],
    driver: int | None,
    shape: tuple[int, int],
    size: tuple[int, int],
    spacing: tuple[float, float] | None = None,
) -> MarkReading:
    """The reviewer's `mark` (as in `mark_point`) against the `candidates` outlined on the
    explained image, measured from it (`nodule_candidates` given its `mark_point`), and the
    `driver` behind the score. The candidate at the mark is `candidate_at_mark`'s, the one
    training measures for a marked slice."""
    point = mark_point(mark, shape, size)
    if point is None:
        text = "A reviewer marked this slice 'no lesion visible': they saw no lesion here."
        if driver is None:
            return MarkReading(None, None, None, None, None, text)
        text += f" The model's score rests on candidate {driver} all the same."
        return MarkReading(None, None, None, None, False, text)
    measured = _distances(candidates)
    back = size[0] / shape[1]  # explained image px -> the slice's own px
    at = candidate_at_mark(measured, point, shape)
    at_mark = None if at is None else at + 1
    where = (
        f"Outlined candidate {at_mark} is at the mark."
        if at_mark
        else "None of the outlined candidates is at the mark."
    )
    if driver is None:
        text = f"A reviewer marked the lesion (blue ring); no single candidate drives the score. {where}"
        return MarkReading(point, at_mark, None, None, None, text)
    pixels = measured[driver - 1] * back
    mm = None if spacing is None else pixels * (spacing[0] + spacing[1]) / 2
    if driver == at_mark:
        text = (
            f"The model's driving candidate {driver} is at the reviewer's marked lesion (blue"
            f" ring): {_length(pixels, mm)} from the marked centre."
        )
    else:
        text = (
            f"The model's driving candidate {driver} is elsewhere: {_length(pixels, mm)} from"
            f" the reviewer's marked lesion (blue ring). {where}"
        )
    return MarkReading(point, at_mark, pixels, mm, driver == at_mark, text)


@dataclass(frozen=True)
class FeatureExplanation:
    class_name: str  # the class whose raw score is explained
    outlined: np.ndarray  # RGB uint8, the full slice with the largest candidates outlined
    # those outlined, largest first (numbered 1, 2, ... on it), then the one at a reviewer's
    # mark when it is smaller than them
    candidates: list[Candidate]
    top: list[Contribution]  # the strongest pushes, by |contribution|, strongest first
    others: float  # the summed contributions of every feature not in `top`
    expected_value: float  # the raw score of an average training slice
    raw_score: float  # expected_value + every contribution: this slice's raw score
    reading: Reading  # what the push towards the class rests on, in words
    mark: MarkReading | None = None  # a reviewer's mark of the slice, beside the candidates


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


def outline_candidates(
    gray: np.ndarray, candidates: list[Candidate], driver: int | None = None
) -> np.ndarray:
    """The slice (gray in [0, 1]) as RGB uint8 with each candidate's outline, numbered; the
    `driver` (its number) twice as thick."""
    base = np.clip(np.asarray(gray, np.float64) * 255, 0, 255).astype(np.uint8)
    image = Image.fromarray(base).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(gray.shape)
    width = max(2, round(side / 256))
    font = ImageFont.load_default(size=max(12, side // 28))
    for number, candidate in enumerate(candidates, start=1):
        colour = OUTLINE_COLOURS[(number - 1) % len(OUTLINE_COLOURS)]
        points = [(c, r) for r, c in candidate.outline]
        thick = 2 * width if number == driver else width
        draw.line([*points, points[0]], fill=colour, width=thick, joint="curve")
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
    mark: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
    spacing: tuple[float, float] | None = None,
) -> FeatureExplanation:
    """A feature model's reasons for one decoded slice (full resolution, as it scores);
    with a reviewer's `mark` of it (`read_mark`; `size`: the slice's own width and height,
    the gray's when not given), the mark beside them."""
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
    shape = (gray.shape[0], gray.shape[1])
    size = size or (shape[1], shape[0])
    point = None if mark is None else mark_point(mark, shape, size)
    measured = nodule_candidates(gray, network.features, point)
    found = measured[:candidates]
    at = None if point is None else candidate_at_mark(_distances(measured), point, shape)
    if at is not None and at >= candidates:  # a smaller one at the mark is outlined too
        found.append(measured[at])
    reading = read_pushes(names, pushes, found, class_name)
    outlined = outline_candidates(gray, found, reading.driver)
    beside = None
    if mark is not None:
        beside = read_mark(mark, found, reading.driver, shape, size, spacing)
        if beside.point is not None:
            image = Image.fromarray(outlined)
            draw_mark(image, beside.point.x, beside.point.y, beside.point.radius, REVIEWER_COLOUR)
            outlined = np.asarray(image, dtype=np.uint8)
    return FeatureExplanation(
        class_name=class_name,
        outlined=outlined,
        candidates=found,
        top=shown,
        others=float(pushes.sum() - pushes[strongest].sum()),
        expected_value=expected,
        raw_score=float(values.sum()),
        reading=reading,
        mark=beside,
    )


def explain_features_file(
    model: LoadedModel,
    path: Path,
    class_name: str = "malignant",
    mark: dict[str, Any] | None = None,
) -> FeatureExplanation:
    """`explain_features` of a stored slice, decoded as the model decodes it for scoring,
    with the reviewer's counting `mark` of it (`review.marks.current_marks`) if any."""
    decoded = read_gray(path, reduce_to=model.reduce_to)
    return explain_features(
        model,
        decoded.gray,
        class_name,
        mark=mark,
        size=(decoded.width, decoded.height),
        spacing=decoded.pixel_spacing,
    )
