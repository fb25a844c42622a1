"""Model selection by grouped cross-validation over the train + validation patients.

The fixed test split is never loaded here. Its train and validation groups (67 pseudo-
patients) are cut into `--folds` class-stratified folds of whole groups (scikit-learn's
StratifiedGroupKFold); each fold is scored once by a model trained on the other folds,
exactly as the training job trains the real one: a fifth of the training groups (per class)
is held back as the fold's own validation part, which fits the temperature, the malignant
threshold, the study rule's cuts and, if on, early stopping.

Both model families go through the same folds: the CNN (`cnn` = today's `TrainConfig()`,
and the earlier CNN probes) and the lung-field feature model through the product's
`fit_feature_model` (`features` = run 5's default: the slices as decoded, LightGBM; `features-r95`: its
malignant threshold for recall 0.95; `features-hgb`: scikit-learn's gradient boosting with
the same settings, the research's reference) and the hybrid (issue 12): the feature family
fitted exactly as `features` on the lung-field features plus the fold's `cnn` embedding
(`hybrid`) or its 3 calibrated probabilities (`hybrid-probs`); each fold's CNN is trained
once and cached (var/bench/cnn-folds/), so `cnn`, `hybrid` and `hybrid-probs` share it. The
trees see embeddings of inner-train slices the CNN was trained on (optimistic there);
`hybrid-probs-oof` avoids that with two CNNs per fold, each on half the inner-train
patients, each scoring the other half (and, averaged, the validation and held-out slices).
Every family is scored by the same code (`model_selection_scores.py`): slice columns
(malignant AUC, benign-vs-normal AUC, malignant recall and normal slices called malignant at
the slice rule, macro-F1 arg-max and rule, ECE, fit seconds; mean ± sd over folds and
pooled) and, for every study statistic, malignant studies found, normal studies called
malignant and study macro-F1 (per fold and pooled).
Issue 19: every feature and CNN configuration also gets the acquisition-invariance check
(held-out slices scored again under each of `PERTURBATIONS`, the nuisance-only baseline,
the noise-matched AUC); `cnn-h` harmonises the CNN's inputs, `cnn-h-aug` adds one
re-acquired copy of each training slice (`TrainConfig.acquisition_copies`).
Results are appended to var/bench/model_selection.json, fold predictions saved to
var/bench/model_selection-NAME.npz. `bench/bench_model_selection.py --configs
features,features-r95,features-hgb,cnn,hybrid,hybrid-probs`; `--show` prints the tables of
everything saved, `--rescore NAME` scores saved folds again, `--rules NAME` compares slice
decision rules, `--matched 0.95,0.96 --configs A,B` compares saved configs at one pooled
threshold each for the same held-out recall, `--noise-bands NAME` its held-out slices by the
noise of the slice as exported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_selection_scores import (  # noqa: E402
    acquisition_extras,
    cnn_inputs,
    feature_part,
    fit_features,
    invariance_table,
    score_folds,
    slice_table,
    study_table,
)

from lung_model.data.audit import inspect  # noqa: E402
from lung_model.data.split import make_split  # noqa: E402
from lung_model.imaging.acquisition import (  # noqa: E402
    CONTRAST_RANGE,
    MATCH_COMPARTMENTS_REFERENCE,
    MATCH_REFERENCE,
    NOISE_RANGE,
    PERTURBATIONS,
    HarmoniseConfig,
)
from lung_model.imaging.features import CROP_HARMONISE, FeatureConfig, feature_names  # noqa: E402
from lung_model.imaging.preprocess import PREPROCESS_VERSION, PreprocessConfig, load_files  # noqa: E402
from lung_model.settings import CLASSES, get_settings  # noqa: E402
from lung_model.training import feature_model as product  # noqa: E402
from lung_model.training.calibration import apply_temperature  # noqa: E402
from lung_model.training.feature_model import FeatureModelConfig  # noqa: E402
from lung_model.training.fit import Part, TrainConfig, fit, predict_logits  # noqa: E402
from lung_model.training.metrics import MALIGNANT, point_metrics  # noqa: E402

# the configurations compared: each is the first default (V1, what the README measured before)
# with these fields changed; "default" is today's TrainConfig() as it is
V1 = {"epochs": 30, "image_size": 128, "dropout": 0.5, "label_smoothing": 0.05, "ema": 0.98,
      "augment": True, "mixup": 0.0, "crop": "none", "early_stopping": True, "members": 1,
      "malignant_threshold": None, "malignant_recall": 0.0}  # fmt: skip
PLAIN = {"augment": False, "ema": 0.0, "early_stopping": False, "label_smoothing": 0.0}
LUNGS96 = {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "lungs"}
CONFIGS: dict[str, dict | None] = {
    "cnn": None,
    "default-v1": {},
    "probe": {**PLAIN, "epochs": 25, "dropout": 0.3},
    "probe96": {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96},
    "probe96-body": {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "body"},
    "probe96-lungs": {**PLAIN, "epochs": 25, "dropout": 0.3, "image_size": 96, "crop": "lungs"},
    "aug96-lungs": {**LUNGS96, "augment": True},
    "mixup96-lungs": {**LUNGS96, "mixup": 0.4},
    "augmix96-lungs": {**LUNGS96, "augment": True, "mixup": 0.4},
    "small96-lungs": {**LUNGS96, "augment": True, "widths": (8, 16, 32, 64), "dropout": 0.5},
    "aug64-lungs": {**LUNGS96, "augment": True, "image_size": 64},
    "aug128-lungs": {**LUNGS96, "augment": True, "image_size": 128},
    "augema96-lungs": {**LUNGS96, "augment": True, "ema": 0.98},
    "aug96-lungs-e15": {**LUNGS96, "augment": True, "epochs": 15},
    "aug96-lungs-e40": {**LUNGS96, "augment": True, "epochs": 40},
    "aug96-lungs-group": {**LUNGS96, "augment": True, "norm": "group"},
    "lungs96-ens3": {**LUNGS96, "members": 3},
    "lungs128": {**LUNGS96, "image_size": 128},
    "lungs128-d256": {**LUNGS96, "image_size": 128, "decode_size": 256},
    "lungs96-e15": {**LUNGS96, "epochs": 15},
    "lungs96-e10": {**LUNGS96, "epochs": 10},
    "lungs96-e15-ens3": {**LUNGS96, "epochs": 15, "members": 3},
    "lungs96-small": {**LUNGS96, "widths": (8, 16, 32, 64), "dropout": 0.5},
    "mixup96-lungs-ens3": {**LUNGS96, "mixup": 0.4, "members": 3},
    "aug96-lungs-wd": {**LUNGS96, "augment": True, "weight_decay": 5e-3, "label_smoothing": 0.1},
}  # fmt: skip
# issue 19, today's CNN with its inputs harmonised (`-h`, the feature family's common
# acquisition) and learning from re-acquired copies of its training slices (`-aug`)
CNN_CONFIGS = {
    "cnn-h": TrainConfig(harmonise=True),
    "cnn-h-aug": TrainConfig(harmonise=True, acquisition_copies=1),
    "cnn-aug": TrainConfig(acquisition_copies=1),
}
RULE_RECALL = 0.98  # the malignant recall every configuration's threshold is fitted for
# the feature family: (config, fit scikit-learn's HistGradientBoosting instead of LightGBM)
# runs 1-6 configurations: the slices as decoded and no re-acquired copies, as run 5's default
# was (the product's default has harmonised and augmented since run 7, and they must keep
# meaning what docs/MODEL.md says they measured)
AS_DECODED = {"features": FeatureConfig(), "augment": 0}
FEATURE_CONFIGS: dict[str, tuple[FeatureModelConfig, bool]] = {
    "features": (FeatureModelConfig(**AS_DECODED), False),
    "features-r95": (FeatureModelConfig(**AS_DECODED, malignant_recall=0.95), False),
    "features-hgb": (FeatureModelConfig(**AS_DECODED), True),
    # the lung-field crop's side (and the masks' copy) at which features are computed: their
    # cost goes with its area (docs/MODEL.md, run 5)
    **{
        f"features-c{side}{'-m64' if mask == 64 else ''}": (
            FeatureModelConfig(features=FeatureConfig(crop_side=side, mask_side=mask), augment=0),
            False,
        )
        for side, mask in [
            (256, 128),
            (224, 128),
            (192, 128),
            (160, 128),
            (128, 128),
            (256, 64),
            (192, 64),
            (128, 64),
        ]
    },  # fmt: skip
}
# issue 19: every slice brought to one common acquisition first (`-h`), plus one randomly
# re-acquired copy of each training slice (`-aug`), and the lesion-candidate features only
# (`-nod`: nod_ and LoG blob responses, no intensity or whole-crop texture)
HARMONISED = FeatureConfig(harmonise=HarmoniseConfig(blur=1.0, ceiling=1.0))
AUG1 = {"augment": 1, "augment_contrast": CONTRAST_RANGE}  # run 7's augmentation
HARMONISED_2 = FeatureConfig(harmonise=HarmoniseConfig(blur=2.0, ceiling=1.0))
HARMONISED_2C = FeatureConfig(harmonise=HarmoniseConfig(blur=2.0, ceiling=0.86))
HARMONISED_C = FeatureConfig(harmonise=HarmoniseConfig(blur=1.0, ceiling=0.86))
FEATURE_CONFIGS.update({
    "features-h": (FeatureModelConfig(features=HARMONISED, augment=0), False),
    "features-h-aug": (FeatureModelConfig(features=HARMONISED, **AUG1), False),
    "features-aug": (FeatureModelConfig(**AUG1), False),
    "features-nod": (FeatureModelConfig(**AS_DECODED), False),
    "features-h-nod": (FeatureModelConfig(features=HARMONISED, augment=0), False),
    "features-h-aug-nod": (FeatureModelConfig(features=HARMONISED, **AUG1), False),
    # a stronger common blur (2 px): the export's own smoothing and a resampled matrix then
    # change the slice the features see less
    "features-h2": (FeatureModelConfig(features=HARMONISED_2, augment=0), False),
    "features-h2-nod": (FeatureModelConfig(features=HARMONISED_2, augment=0), False),
    "features-h2-aug": (FeatureModelConfig(features=HARMONISED_2, **AUG1), False),
    # and clipped at 0.86 after the re-window: a narrower window's saturation is everyone's
    "features-h2c": (FeatureModelConfig(features=HARMONISED_2C, augment=0), False),
    "features-h2c-aug": (FeatureModelConfig(features=HARMONISED_2C, **AUG1), False),
    "features-hc-aug": (FeatureModelConfig(features=HARMONISED_C, **AUG1), False),
})  # fmt: skip
# run 9: glcm_ and lbp_ of the lung field only (`-hf`: a narrower window's saturation of the
# tissue around the lungs no longer reaches them), and wider augmentation (`-aug2w`: two
# copies, contrast x0.6..1.5, so the trees see saturated exports of both classes)
HARMONISED_FIELD = replace(HARMONISED, texture_region="field")
WIDER = {"augment": 2, "augment_contrast": (0.6, 1.5)}
HARMONISED_CROP = replace(HARMONISED, harmonise=CROP_HARMONISE, harmonise_at="crop")
FEATURE_CONFIGS.update({
    "features-hf-aug": (FeatureModelConfig(features=HARMONISED_FIELD, **AUG1), False),
    "features-hf-aug2w": (FeatureModelConfig(features=HARMONISED_FIELD, **WIDER), False),
    "features-h-aug2w": (FeatureModelConfig(features=HARMONISED, **WIDER), False),
    "features-h-aug2": (FeatureModelConfig(features=HARMONISED, **{**AUG1, "augment": 2}), False),
    # three copies at x0.6..1.5; two at x0.6..1.8 (a still narrower window)
    "features-h-aug3w": (FeatureModelConfig(features=HARMONISED, **{**WIDER, "augment": 3}), False),
    "features-h-aug2ww": (
        FeatureModelConfig(features=HARMONISED, augment=2, augment_contrast=(0.6, 1.8)), False
    ),
    # without glcm_ (`-noglcm`): its energy and entropy are what a narrower window moved
    "features-h-aug-noglcm": (FeatureModelConfig(features=HARMONISED, **AUG1), False),
    # nor lbp_ (`-notex`: nod_, log_ and int_ only)
    "features-h-aug-notex": (FeatureModelConfig(features=HARMONISED, **AUG1), False),
    # the default (`-h-aug2w`) on a square matrix (`-hs`: columns no longer tell odd sizes)
    "features-hs-aug2w": (
        FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(square=True)),
                           **WIDER), False,
    ),
    # run 10: the default harmonising the lung-field crop instead of the whole slice
    # (`-hcrop`: ~7x fewer pixels to re-window, blur and noise; issue 19's scoring cost)
    "features-hcrop-aug2w": (FeatureModelConfig(features=HARMONISED_CROP, **WIDER), False),
    # the crop blurred 1 crop px and noised to 0.005, about the crop-level noise of today's
    # whole-slice harmonisation (its blurred crops measure at most 0.0049 before the noise)
    "features-hcrop1-aug2w": (
        FeatureModelConfig(features=replace(HARMONISED_CROP, harmonise=HarmoniseConfig(
            blur=1.0, noise=0.005)), **WIDER), False,
    ),
    # run 11: the whole slice harmonised at 256 rows instead of 512 (`-h256`: 1/4 of the
    # pixels to re-window, blur and noise; the 192 px lung-field crop is then about the lung
    # box's own size). At 256 rows a 0.75 px blur leaves every sampled slice's noise below
    # 0.0037 (normal median 0.0015), so 0.005 is above every export; `-h256n8`: 0.008
    "features-h256-aug2w": (FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(
        rows=256, blur=0.75, noise=0.005)), **WIDER), False),
    "features-h256n8-aug2w": (FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(
        rows=256, blur=0.75, noise=0.008)), **WIDER), False),
})  # fmt: skip
# run 12: the default with the body's gray values matched to one reference distribution
# (`-hm`: `MATCH_REFERENCE`'s quantiles) instead of the linear re-window of two tissue levels
HARMONISED_MATCH = replace(HARMONISED, harmonise=HarmoniseConfig(match=MATCH_REFERENCE))
FEATURE_CONFIGS.update({
    "features-hm-aug2w": (FeatureModelConfig(features=HARMONISED_MATCH, **WIDER), False),
    # the aerated lung and the soft tissue matched each on its own (`-hmc`): whole-body
    # matching brightens the lung of a slice with more lung than the reference
    "features-hmc-aug2w": (FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(
        match=MATCH_COMPARTMENTS_REFERENCE, match_compartments=True)), **WIDER), False),
    # the tissue levels measured after the blur (`-hb`): measured on the slice as exported,
    # the soft-tissue median moves with its noise, so re-windowed slices kept the export's level
    "features-hb-aug2w": (FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(
        levels_after_blur=True)), **WIDER), False),
    # and clipped at 0.86 (`-hbc`), where a narrower export's saturation lands once its levels
    # are brought to the common ones (run 7's `-hc-aug`, on the old levels)
    "features-hbc-aug2w": (FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(
        levels_after_blur=True, ceiling=0.86)), **WIDER), False),
    # the texture (glcm_, lbp_) alone read clipped at 0.86 (`-hbt`): only what the narrower
    # window moved (run 9's diagnosis), the other features keep the bright tissue
    "features-hbt-aug2w": (FeatureModelConfig(features=replace(HARMONISED, texture_ceiling=0.86,
        harmonise=HarmoniseConfig(levels_after_blur=True)), **WIDER), False),
    # run 10's crop harmonisation with its levels from block means (`-hcropb`): the noise
    # brought to the common level at the scale the features read, from levels the export's
    # noise does not move (the nuisance-only baseline read 0.931 on the default's crop)
    "features-hcropb-aug2w": (FeatureModelConfig(features=replace(HARMONISED_CROP,
        harmonise=replace(CROP_HARMONISE, levels_averaged=True)), **WIDER), False),
    # and its copies' contrast up to x1.8 (run 9's `-aug2ww`, the most invariant to a
    # narrower window then)
    "features-hb-aug2ww": (FeatureModelConfig(features=replace(HARMONISED, harmonise=HarmoniseConfig(
        levels_after_blur=True)), augment=2, augment_contrast=(0.6, 1.8)), False),
})  # fmt: skip
# run 13: `-hcropb` with its crop noised to 0.008 instead of 0.010 (`-hcropb8`, the default's
# harmonisation; with the threshold for recall 0.93, `-hcropb8-aug2w-r93`, the default): less
# added noise over the lesion's texture, and the export's noise stays out
_HCROPB = FEATURE_CONFIGS["features-hcropb-aug2w"][0]
FEATURE_CONFIGS["features-hcropb8-aug2w"] = (replace(_HCROPB, features=replace(
    _HCROPB.features, harmonise=replace(_HCROPB.features.harmonise, noise=0.008))), False)  # fmt: skip
# blurred 1 crop px instead of 0.75 (`-hcropb8b1`): smoothing a normal slice still moved it
# towards malignant (run 13's test split: 27.5% of normal slices against 21.7%)
FEATURE_CONFIGS["features-hcropb8b1-aug2w"] = (replace(_HCROPB, features=replace(
    _HCROPB.features, harmonise=replace(_HCROPB.features.harmonise, noise=0.008, blur=1.0))),
    False)  # fmt: skip
# with noise constant over 2 x 2 blocks first (`-hcropb8c2`: the noise of the crop's 2 x 2
# block means brought to 0.02): the default's crop still told malignant slices apart at
# 0.935 by that coarser noise, which follows the export's raw noise within each class
FEATURE_CONFIGS["features-hcropb8c2-aug2w"] = (replace(_HCROPB, features=replace(
    _HCROPB.features, harmonise=replace(_HCROPB.features.harmonise, noise=0.008,
                                        coarse_noise=0.02))), False)  # fmt: skip
# four re-acquired copies of each training slice instead of two (`-aug4w`): more smoothed
# and re-windowed normal slices for the trees to learn are normal
FEATURE_CONFIGS["features-hcropb8-aug4w"] = (replace(
    FEATURE_CONFIGS["features-hcropb8-aug2w"][0], augment=4), False)  # fmt: skip
# the copies' noise drawn from 0.0015..0.005 instead of ..0.012 (`-aug2ws`): nearly every copy
# of a normal slice smoothed towards the malignant exports' noise, smoothing being what moved
# the default's normal slices towards malignant on the test split
FEATURE_CONFIGS["features-hcropb8-aug2ws"] = (replace(
    FEATURE_CONFIGS["features-hcropb8-aug2w"][0], augment_noise=(0.0015, 0.005)), False)  # fmt: skip
# the malignant threshold fitted for out-of-fold recall 0.93 or 0.90 instead of 0.95 (`-r93`,
# `-r90`): its held-out recall at 0.95 was 0.973, so the rule may be asking for more than it gets
for _recall in (0.93, 0.90):
    FEATURE_CONFIGS[f"features-hcropb8-aug2w-r{round(_recall * 100)}"] = (replace(
        FEATURE_CONFIGS["features-hcropb8-aug2w"][0], malignant_recall=_recall), False)  # fmt: skip
# and its copies' contrast up to x1.8 (`-aug2ww`): the narrower window is its worst perturbation
FEATURE_CONFIGS["features-hcropb8-aug2ww"] = (replace(
    FEATURE_CONFIGS["features-hcropb8-aug2w"][0], augment_contrast=(0.6, 1.8)), False)  # fmt: skip
# the trees read only the features whose ICC(1,1) over each training slice and its two
# re-acquired copies reaches 0.75 / 0.6 (`-s75`, `-s60`; `lung_model.training.stability`): the
# radiomics field's screen for features an acquisition moves
for _floor in (0.75, 0.6):
    FEATURE_CONFIGS[f"features-hcropb8-aug2w-r93-s{round(_floor * 100)}"] = (replace(
        FEATURE_CONFIGS["features-hcropb8-aug2w-r93"][0], stable_floor=_floor), False)  # fmt: skip
# the lung masks found on block means instead of every 4th pixel (`-hcropb8m`, the default
# from run 14, == FeatureModelConfig()): on the noisiest exports the strided copy lost the lung
# field (27 normal slices, 1 benign), found again once the slice was smoothed or re-acquired
# (`FeatureConfig.mask_averaged`)
_R93 = FEATURE_CONFIGS["features-hcropb8-aug2w-r93"][0]
FEATURE_CONFIGS["features-hcropb8m-aug2w-r93"] = (replace(_R93, features=replace(
    _R93.features, mask_averaged=True)), False)  # fmt: skip
assert FEATURE_CONFIGS["features-hcropb8m-aug2w-r93"][0] == FeatureModelConfig()  # the default
# and without the LBP histogram (`-nolbp`) or any whole-crop texture (`-notex`): the trees' most
# used feature, lbp_6 (a quarter of their gain), is one smoothing moves towards malignant
for _texture in ("-nolbp", "-notex"):
    FEATURE_CONFIGS[f"features-hcropb8m-aug2w-r93{_texture}"] = FEATURE_CONFIGS[
        "features-hcropb8m-aug2w-r93"]  # fmt: skip
# the crop's added noise one fixed pattern instead of one seeded by the crop's content
# (`-hcropb8mf`, `HarmoniseConfig.fixed_noise`): any other export of a slice got a new pattern
# over its texture, so even a perturbation the harmonisation undoes moved the texture features
_DEFAULT = FEATURE_CONFIGS["features-hcropb8m-aug2w-r93"][0]
FEATURE_CONFIGS["features-hcropb8mf-aug2w-r93"] = (replace(_DEFAULT, features=replace(
    _DEFAULT.features, harmonise=replace(_DEFAULT.features.harmonise, fixed_noise=True))),
    False)  # fmt: skip
# a lung the air could not find added as the mirror image of the one found (`-hcropb8mm`,
# `FeatureConfig.mirror_missing_lung`): on 32 malignant slices (and 3 normal ones) the crop had
# cut off the consolidated or tumour-filled lung, lesion and all (docs/MODEL.md, run 17)
FEATURE_CONFIGS["features-hcropb8mm-aug2w-r93"] = (replace(_DEFAULT, features=replace(
    _DEFAULT.features, mirror_missing_lung=True)), False)  # fmt: skip
LESION_GROUPS = ("nod_", "log_")  # the `-nod` configurations' feature columns
# the cached features without whole-crop texture: the columns each name's ending leaves out
TEXTURE_DROPPED = {"-noglcm": ("glcm_",), "-nolbp": ("lbp_",), "-notex": ("glcm_", "lbp_")}
# CNN (`cnn`'s training, cached and shared) + the feature family: HybridConfig.cnn_input
HYBRID_CONFIGS = {"hybrid": "embedding", "hybrid-probs": "probabilities",
                  "hybrid-probs-oof": "probabilities-oof"}  # fmt: skip


def folds(split, k: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """(training paths, held-out paths) per fold, over the train and validation parts only."""
    from sklearn.model_selection import StratifiedGroupKFold

    paths = sorted(p for p, part in split.part.items() if part in ("train", "val"))
    labels = [split.label[p] for p in paths]
    groups = [split.group[p] for p in paths]
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        ([paths[i] for i in fit_idx], [paths[i] for i in out_idx])
        for fit_idx, out_idx in cv.split(paths, labels, groups)
    ]


def hold_back(split, paths: list[str], share: float = 0.2, seed: int = 0):
    """`paths` cut into (train, validation) by whole groups, `share` of each class's groups."""
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for cls in CLASSES:
        names = sorted({split.group[p] for p in paths if split.label[p] == cls})
        rng.shuffle(names)
        held.update(names[: max(1, round(share * len(names)))])
    return [p for p in paths if split.group[p] not in held], [
        p for p in paths if split.group[p] in held
    ]


_ARRAYS: dict[PreprocessConfig, dict[str, np.ndarray]] = {}


def part(split, paths: list[str], data: Path, preprocess: PreprocessConfig) -> Part:
    if preprocess not in _ARRAYS:
        cache = get_settings().home / "bench" / "arrays"
        key = (
            f"v{PREPROCESS_VERSION}-{preprocess.image_size}-{preprocess.crop}"
            f"-{preprocess.reduce_to}-{split.data_version}-trainval"
        )
        if preprocess.harmonise is not None:  # the common acquisition's settings too
            common = json.dumps(preprocess.harmonise.to_dict(), sort_keys=True)
            key += "-h" + hashlib.sha1(common.encode()).hexdigest()[:8]
        file = cache / f"{key}.npz"
        everything = sorted(p for p, name in split.part.items() if name != "test")
        if file.exists():
            x = np.load(file)["x"]
        else:
            x = load_files([data / p for p in everything], preprocess)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(file, x=x)
        _ARRAYS[preprocess] = dict(zip(everything, x, strict=True))
    arrays = _ARRAYS[preprocess]
    return Part(
        np.stack([arrays[p] for p in paths]),
        np.array([CLASSES.index(split.label[p]) for p in paths]),
        np.array([split.group[p] for p in paths]),
        paths,
    )


# the training code as this process runs it (read at start: others may edit the files during
# a run); the slices come from part()'s cache, keyed by PREPROCESS_VERSION
_CNN_CODE = hashlib.sha1(b"".join(
    (ROOT / "lung_model" / name).read_bytes()
    for name in ("training/fit.py", "training/network.py", "training/augment.py",
                 "training/calibration.py", "training/reacquire.py", "imaging/acquisition.py")
)).hexdigest()  # fmt: skip


def cnn_outputs(config: TrainConfig, split, data: Path, train_paths, val_paths, out_paths):
    """One CNN trained on `train_paths` (temperature and threshold on `val_paths`; with
    `acquisition_copies`, their re-acquired copies too) and its logits and embeddings (the
    global-average-pooling output before dropout and logits; an ensemble's members side by
    side) for the train, validation and held-out slices, and the held-out slices' logits under
    every perturbation of the invariance check (`out@<name>_logits`; `out_full_logits`:
    unchanged, decoded at full resolution as the perturbed ones, when the model decodes JPEGs
    at reduced scale). Cached in var/bench/cnn-folds/ under a digest of the config (its
    preprocessing, harmonisation and copies), the paths, the data version and the training
    code, so `cnn`, `hybrid` and `hybrid-probs` share one training a fold."""
    import keras

    preprocess = config.preprocess()
    key = json.dumps([config.params(), preprocess.to_dict(), train_paths, val_paths, out_paths,
                      split.data_version, PREPROCESS_VERSION, keras.__version__, _CNN_CODE],
                     sort_keys=True, default=str)  # fmt: skip
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    file = get_settings().home / "bench" / "cnn-folds" / f"{digest}.npz"
    if file.exists():
        return dict(np.load(file))
    parts = {
        name: part(split, paths, data, preprocess)
        for name, paths in (("train", train_paths), ("val", val_paths), ("out", out_paths))
    }
    copies = None
    if config.acquisition_copies:  # slice-major, as lung_model.training.reacquire makes them
        made = [cnn_inputs(split, train_paths, data, preprocess, f"augment{k}")
                for k in range(config.acquisition_copies)]  # fmt: skip
        copies = np.stack([np.stack([c[p] for c in made]) for p in train_paths])
        copies = copies.reshape(-1, *copies.shape[2:])
    started = time.monotonic()
    fitted = fit(config, parts["train"], parts["val"], progress=False, copies=copies)
    seconds = time.monotonic() - started
    pools = [layer.output for layer in fitted.network.layers
             if isinstance(layer, keras.layers.GlobalAveragePooling2D)]  # fmt: skip
    embed = keras.Model(
        fitted.network.input, pools[0] if len(pools) == 1 else keras.layers.Concatenate()(pools)
    )
    threshold = fitted.malignant_threshold
    outputs = {"temperature": np.array(fitted.temperature), "seconds": np.array(seconds),
               "threshold": np.array(np.nan if threshold is None else threshold)}  # fmt: skip
    for name, p in parts.items():
        outputs[f"{name}_logits"] = predict_logits(fitted.network, p.x)
        outputs[f"{name}_embedding"] = predict_logits(embed, p.x).astype(np.float32)
    checked = [*PERTURBATIONS] + ([None] if preprocess.reduce_to is not None else [])
    for name in checked:
        inputs = cnn_inputs(split, out_paths, data, preprocess, name)
        logits = predict_logits(fitted.network, np.stack([inputs[p] for p in out_paths]))
        outputs["out_full_logits" if name is None else f"out@{name}_logits"] = logits
    file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(file, **outputs)
    return outputs


def _threshold(outputs: dict) -> float | None:
    t = float(outputs["threshold"])
    return None if np.isnan(t) else t


def cnn_fold(config: TrainConfig, split, data: Path, inner_train, inner_val, out_paths):
    """(validation probabilities, labels, groups, held-out probabilities, slice threshold,
    fit seconds, the acquisition-invariance check's inputs as `feature_fold` gives them)."""
    cnn = cnn_outputs(config, split, data, inner_train, inner_val, out_paths)
    val = part(split, inner_val, data, config.preprocess())

    def probabilities(name: str) -> np.ndarray:
        return apply_temperature(cnn[f"{name}_logits"], float(cnn["temperature"]))

    extras = {f"out_p@{name}": probabilities(f"out@{name}") for name in PERTURBATIONS
              if f"out@{name}_logits" in cnn}  # fmt: skip
    if "out_full_logits" in cnn:
        extras["out_p_full"] = probabilities("out_full")
    if extras:
        common = config.preprocess().harmonise
        extras.update(
            acquisition_extras(split, [*inner_train, *inner_val], out_paths, data, common)
        )
    return (probabilities("val"), val.y, val.groups, probabilities("out"), _threshold(cnn),
            float(cnn["seconds"]), extras)  # fmt: skip


def feature_fold(config, split, data: Path, inner_train, inner_val, out_paths, hgb=False,
                 columns=None):  # fmt: skip
    """The fold fitted and scored, with the acquisition-invariance check: the held-out
    slices' probabilities under every perturbation, the nuisance-only baseline's p(malignant)
    (trained on the inner-train and inner-validation slices' acquisition measurements of
    the model's inputs) and the held-out slices' raw noise."""
    features = config.features

    def part_of(paths, perturbation=None):
        return feature_part(split, paths, data, features, perturbation, columns)

    train, val, out = (part_of(p) for p in (inner_train, inner_val, out_paths))
    augmented = None
    if config.augment:
        low, high = config.augment_contrast  # named only when not the default range
        wider = "" if (low, high) == CONTRAST_RANGE else f"@{low:g}-{high:g}"
        if config.augment_noise != NOISE_RANGE:
            wider += "~{:g}-{:g}".format(*config.augment_noise)
        copies = [part_of([*inner_train, *inner_val], f"augment{k}{wider}")
                  for k in range(config.augment)]  # fmt: skip
        augmented = Part(*(np.concatenate([getattr(c, a) for c in copies])
                           for a in ("x", "y", "groups")),
                         [p for c in copies for p in c.paths])  # fmt: skip
    names = feature_names(features)
    kept = names if columns is None else [names[i] for i in columns]
    with mock.patch.object(product, "feature_names", lambda _: kept):  # the trees' names
        predict, threshold, seconds, (rules_part, rules_p) = fit_features(
            config, train, val, hgb, augmented
        )
    extras = {f"out_p@{name}": predict(part_of(out_paths, name).x) for name in PERTURBATIONS}
    # the model sees the lung-field crop: its measurements are the nuisance baselines' (up to
    # run 11's first runs, a whole-slice harmonisation measured the whole slice)
    extras.update(acquisition_extras(split, [*inner_train, *inner_val], out_paths, data,
                                     features.harmonise, features))  # fmt: skip
    return rules_p, rules_part.y, rules_part.groups, predict(out.x), threshold, seconds, extras


@dataclass(frozen=True)
class HybridConfig:
    """The feature family fitted on lung-field features plus what a CNN makes of the same
    slice: `embedding` (its pooled 128 channels) or `probabilities` (its 3 calibrated
    probabilities); `probabilities-oof`: the training slices' probabilities come from CNNs
    that never saw them (two CNNs, each on half the inner-train patients)."""

    cnn_input: str = "embedding"
    cnn: TrainConfig = field(default_factory=TrainConfig)
    trees: FeatureModelConfig = field(default_factory=lambda: FeatureModelConfig(**AS_DECODED))

    def params(self) -> dict:
        return {"cnn_input": self.cnn_input, **{f"cnn_{k}": v for k, v in self.cnn.params().items()},
                **{f"trees_{k}": v for k, v in self.trees.params().items()}}  # fmt: skip


def _cnn_columns(config: HybridConfig, split, data: Path, inner_train, inner_val, out_paths):
    """(train, validation, held-out) CNN columns for the trees, and the CNN fit seconds."""
    if config.cnn_input == "probabilities-oof":
        halves = hold_back(split, inner_train, share=0.5)
        runs = [cnn_outputs(config.cnn, split, data, fit_on, inner_val, [*scored, *out_paths])
                for fit_on, scored in (halves, halves[::-1])]  # fmt: skip
        p = [apply_temperature(r["out_logits"], float(r["temperature"])) for r in runs]
        p_val = [apply_temperature(r["val_logits"], float(r["temperature"])) for r in runs]
        n_out = len(out_paths)  # each run scored the other half, then the held-out fold
        by_path = dict(zip(halves[1], p[0][:-n_out], strict=True))
        by_path.update(zip(halves[0], p[1][:-n_out], strict=True))
        train = np.stack([by_path[q] for q in inner_train])
        seconds = sum(float(r["seconds"]) for r in runs)
        return train, np.mean(p_val, axis=0), np.mean([x[-n_out:] for x in p], axis=0), seconds
    cnn = cnn_outputs(config.cnn, split, data, inner_train, inner_val, out_paths)
    if config.cnn_input == "embedding":
        columns = [cnn[f"{name}_embedding"] for name in ("train", "val", "out")]
    else:
        columns = [apply_temperature(cnn[f"{name}_logits"], float(cnn["temperature"]))
                   for name in ("train", "val", "out")]  # fmt: skip
    return (*columns, float(cnn["seconds"]))


def hybrid_fold(config: HybridConfig, split, data: Path, inner_train, inner_val, out_paths):
    """`feature_fold` on [lung-field features, CNN columns]; fit seconds include the CNN's."""
    *columns, cnn_seconds = _cnn_columns(config, split, data, inner_train, inner_val, out_paths)
    features = [feature_part(split, p, data, config.trees.features)
                for p in (inner_train, inner_val, out_paths)]  # fmt: skip
    train, val, out = (Part(np.hstack([f.x, c.astype(np.float32)]), f.y, f.groups, f.paths)
                       for f, c in zip(features, columns, strict=True))  # fmt: skip
    names = [*feature_names(config.trees.features),
             *(f"cnn_{i}" for i in range(columns[0].shape[1]))]  # fmt: skip
    with mock.patch.object(product, "feature_names", lambda _: names):  # the trees' names
        predict, threshold, seconds, (rules_part, rules_p) = fit_features(config.trees, train, val)
    return (rules_p, rules_part.y, rules_part.groups, predict(out.x), threshold,
            seconds + cnn_seconds, {})  # fmt: skip


def cross_validate(name: str, split, data: Path, k: int) -> dict:
    """Fit `name` on every fold, save the fold predictions, then score them."""
    config, fold_fit = configuration(name)
    started = time.monotonic()
    saved: dict[str, np.ndarray] = {}  # every fold's probabilities, to rescore and compare rules
    seconds = []
    for index, (train_paths, out_paths) in enumerate(folds(split, k)):
        inner_train, inner_val = hold_back(split, train_paths, seed=index)
        val_p, val_y, val_g, out_p, threshold, fit_seconds, extras = fold_fit(
            config, split, data, inner_train, inner_val, out_paths
        )  # val_*: what the slice and study rules were fitted on; extras: invariance check
        saved.update({f"fold{index}_{key}": value for key, value in extras.items()})
        saved.update({f"fold{index}_val_p": val_p, f"fold{index}_val_y": val_y,
                      f"fold{index}_val_g": val_g, f"fold{index}_out_p": out_p})  # fmt: skip
        saved[f"fold{index}_out_y"] = np.array([CLASSES.index(split.label[q]) for q in out_paths])
        saved[f"fold{index}_out_g"] = np.array([split.group[q] for q in out_paths])
        saved[f"fold{index}_threshold"] = np.array(np.nan if threshold is None else threshold)
        seconds.append(fit_seconds)
        print(f"{name} fold {index}: threshold {threshold}, fit {fit_seconds:.1f} s", flush=True)
    saved["fit_seconds"] = np.array(seconds)
    np.savez(get_settings().home / "bench" / f"model_selection-{name}.npz", **saved)
    return {"name": name, "config": config.params(), "minutes": (time.monotonic() - started) / 60,
            **score_folds(saved, k, seconds)}  # fmt: skip


def rescore(name: str, k: int) -> dict:
    """A saved run scored again by today's scoring code, without refitting."""
    saved = dict(np.load(get_settings().home / "bench" / f"model_selection-{name}.npz"))
    config, _ = configuration(name)
    return {"name": name, "config": config.params(), "minutes": float("nan"),
            **score_folds(saved, k, saved["fit_seconds"].tolist())}  # fmt: skip


def configuration(name: str):
    """(config, fold fitter) of a configuration name."""
    if name in HYBRID_CONFIGS:
        return HybridConfig(HYBRID_CONFIGS[name]), hybrid_fold
    if name in FEATURE_CONFIGS:
        config, hgb = FEATURE_CONFIGS[name]
        columns = None
        names = feature_names(config.features)
        if name.endswith("-nod"):
            columns = np.array([i for i, n in enumerate(names) if n.startswith(LESION_GROUPS)])
        dropped = next((d for s, d in TEXTURE_DROPPED.items() if name.endswith(s)), None)
        if dropped:
            columns = np.array([i for i, n in enumerate(names) if not n.startswith(dropped)])
        return config, partial(feature_fold, hgb=hgb, columns=columns)
    if name in CNN_CONFIGS:
        return CNN_CONFIGS[name], cnn_fold
    changes = CONFIGS[name]
    if changes is None:
        return TrainConfig(), cnn_fold
    return replace(TrainConfig(), **{**V1, "malignant_recall": RULE_RECALL, **changes}), cnn_fold


def rules(name: str, folds: int) -> str:
    """Decision rules compared on one configuration's saved fold predictions: each fold's
    threshold is fitted on that fold's own validation groups (or fixed), scored out of fold."""
    from lung_model.training.calibration import fit_malignant_threshold
    from lung_model.training.metrics import classify

    saved = np.load(get_settings().home / "bench" / f"model_selection-{name}.npz")
    candidates: dict[str, object] = {"argmax": None}
    candidates.update({f"fixed {t}": t for t in (0.2, 0.3, 0.4)})
    candidates.update({f"val recall {r}": r for r in (0.9, 0.95, 0.98)})
    lines = [f"decision rules on {name} (mean ± sd over folds; pooled)",
             "| rule | macro-F1 | malignant recall | benign recall | pooled macro-F1 | pooled malignant recall |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label, value in candidates.items():
        rows, ys, ps = [], [], []
        for i in range(folds):
            y, p = saved[f"fold{i}_out_y"], saved[f"fold{i}_out_p"]
            threshold = value
            if label.startswith("val"):
                threshold = fit_malignant_threshold(
                    saved[f"fold{i}_val_p"], saved[f"fold{i}_val_y"], float(value), MALIGNANT
                )
            rows.append(point_metrics(y, p, threshold))
            decided = np.eye(3)[classify(p, threshold)]
            ys.append(y)
            ps.append(decided)
        pooled = point_metrics(np.concatenate(ys), np.concatenate(ps))
        cells = [
            f"{np.mean([r[m] for r in rows]):.2f} ± {np.std([r[m] for r in rows]):.2f}"
            for m in ("macro_f1", "recall_malignant", "recall_benign")
        ]
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {pooled['macro_f1']:.3f} | {pooled['recall_malignant']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def _pooled(saved, folds: int, key: str) -> np.ndarray:
    return np.concatenate([saved[f"fold{i}_{key}"] for i in range(folds)])


def matched(names: list[str], recalls: list[float], folds: int) -> str:
    """Configs compared at one pooled threshold each, set for the same held-out malignant
    recall (for comparison only: each fold's rule is what ships): normal slices called
    malignant, and under each perturbation the malignant calls changed, normal slices called
    malignant and recall. Each config's rule lands its threshold elsewhere, which can hide
    or fake a difference between them."""
    lines = ["| config | pooled recall | normal → malignant | worst calls changed | worst normal → "
             "malignant | lowest recall | per perturbation: changed / normal → malignant / recall |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name in names:
        saved = np.load(get_settings().home / "bench" / f"model_selection-{name}.npz")
        pooled = partial(_pooled, saved, folds)
        y, p = pooled("out_y"), pooled("out_p")[:, MALIGNANT]
        for recall in recalls:
            threshold = np.quantile(p[y == MALIGNANT], 1 - recall)
            called = p >= threshold
            rows = []
            for perturbation in [q for q in PERTURBATIONS if f"fold0_out_p@{q}" in saved]:
                moved = pooled(f"out_p@{perturbation}")[:, MALIGNANT] >= threshold
                rows.append((perturbation, np.mean(moved != called),
                             np.mean(moved[y == 0]), np.mean(moved[y == MALIGNANT])))  # fmt: skip
            each = ", ".join(f"{n} {c:.1%} / {m:.1%} / {r:.3f}" for n, c, m, r in rows)
            lines.append(f"| {name} | {recall} | {np.mean(called[y == 0]):.1%} | "
                         f"{max(r[1] for r in rows):.1%} | {max(r[2] for r in rows):.1%} | "
                         f"{min(r[3] for r in rows):.3f} | {each} |")  # fmt: skip
    return "\n".join(lines)


# `noise_bands`' edges, on the slice as exported: this release's malignant exports lie below 0.004
NOISE_BANDS = (0.0, 0.004, 0.006, 0.01, 0.02, 1.0)


def noise_bands(name: str, folds: int) -> str:
    """Held-out slices by the noise of the slice as exported (`out_noise`) and class: how many
    (and patients), and the share each fold's rule calls malignant. A model that reads the
    lesion finds malignant slices in every band; one that reads the export, only where this
    release's malignant patients were exported."""
    saved = np.load(get_settings().home / "bench" / f"model_selection-{name}.npz")
    pooled = partial(_pooled, saved, folds)
    thresholds = [float(saved[f"fold{i}_threshold"]) for i in range(folds)]
    called = np.concatenate([saved[f"fold{i}_out_p"][:, MALIGNANT] >= thresholds[i]
                             for i in range(folds)])  # fmt: skip
    y, noise, groups = pooled("out_y"), pooled("out_noise"), pooled("out_g")
    lines = [f"{name}: held-out slices by the exported slice's noise (slices, patients: called "
             "malignant at the rule)", "| noise | " + " | ".join(CLASSES) + " |",
             "| --- |" + " --- |" * len(CLASSES)]  # fmt: skip
    for low, high in zip(NOISE_BANDS, NOISE_BANDS[1:], strict=False):
        band = (noise >= low) & (noise < high)
        cells = []
        for label in range(len(CLASSES)):
            chosen = band & (y == label)
            cells.append(f"{chosen.sum()}, {len(set(groups[chosen]))}: {called[chosen].mean():.0%}"
                         if chosen.any() else "–")  # fmt: skip
        lines.append(f"| {low:g}–{high:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="features,cnn")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--show", action="store_true", help="print the tables of all saved results")
    parser.add_argument("--rescore", help="score these configs' saved folds again (comma list)")
    parser.add_argument("--rules", help="compare slice decision rules on this config's saved folds")
    parser.add_argument("--noise-bands", help="this config's held-out slices by exported noise")
    parser.add_argument("--matched", help="compare --configs' saved folds at these pooled "
                        "malignant recalls (comma list), one threshold each")  # fmt: skip
    args = parser.parse_args()
    out = get_settings().home / "bench" / "model_selection.json"
    saved = json.loads(out.read_text()) if out.exists() else []
    if args.rules:
        print(rules(args.rules, args.folds))
        return 0
    if args.noise_bands:
        print(noise_bands(args.noise_bands, args.folds))
        return 0
    if args.matched:
        recalls = [float(r) for r in args.matched.split(",")]
        print(matched(args.configs.split(","), recalls, args.folds))
        return 0
    names = (args.rescore or args.configs).split(",")
    if not args.show:
        if not args.rescore:
            data = args.data or get_settings().raw_data
            split = make_split(inspect(data))
        for name in names:
            result = (
                rescore(name, args.folds)
                if args.rescore
                else cross_validate(name, split, data, args.folds)
            )
            current = json.loads(out.read_text()) if out.exists() else []  # others may run too
            saved = [r for r in current if r["name"] != name] + [result]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(saved, indent=1, default=float))
        saved = [r for r in saved if r["name"] in names]
    print("Slices (mean ± sd over folds; pooled: all held-out slices, each fold's own rule)")
    print(slice_table(saved))
    print("\nStudies (each rule's cuts fitted on the fold's inner-validation studies)")
    print(study_table(saved))
    print(
        "\nAcquisition invariance (held-out slices under each perturbation, mean over folds;"
        " `any` study rule) and the nuisance-only baseline"
    )
    print(invariance_table(saved))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
