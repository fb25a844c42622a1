"""Model commands: train (then register and gate), operator override, rollback.

`train` composes the same three steps as the `lung_retrain` DAG: the training job logs one
MLflow run, the registry makes its model the challenger, the gate decides on it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from lung_model.cli.exit_codes import ExitCode
from lung_model.lifecycle.promotion import promote, rollback, run_gate
from lung_model.platform.registry import register
from lung_model.settings import get_settings
from lung_model.training.fit import TrainConfig
from lung_model.training.job import preset, train_and_log


def cli_train(args: argparse.Namespace) -> ExitCode:
    settings = get_settings()
    config = preset(args.config)
    if not isinstance(config, TrainConfig):
        if args.epochs or args.image_size:
            print(
                "error: --epochs, --image-size: CNN presets only (cnn, cnn-tiny)", file=sys.stderr
            )
            return ExitCode.USAGE
    elif args.epochs:
        config = replace(
            config, epochs=args.epochs, min_epochs=min(config.min_epochs, args.epochs - 1)
        )
    if isinstance(config, TrainConfig) and args.image_size:
        config = replace(config, image_size=args.image_size)
    result = train_and_log(settings, config, args.data, progress=None)
    test = result.test["slice"]
    ci = result.test["ci95"]
    print(
        f"run {result.run_id} ({result.seconds / 60:.1f} min), data version {result.data_version}"
    )
    print(
        f"test (group split): accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f} "
        f"[{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}], malignant recall "
        f"{test['recall_malignant']:.3f} [{ci['recall_malignant'][0]:.3f}, {ci['recall_malignant'][1]:.3f}], "
        f"ECE {test['ece']:.3f}"
    )
    version = register(result.run_id, settings)
    decision = run_gate(version, settings, data_dir=args.data)
    print(f"model version {version}: {decision.decision} ({decision.reason})")
    return ExitCode.OK


def cli_promote(args: argparse.Namespace) -> ExitCode:
    decision = promote(args.version, args.reason, get_settings())
    print(
        f"version {decision.candidate_version} is now champion (was {decision.champion_version});"
        " recorded as override"
    )
    return ExitCode.OK


def cli_rollback(args: argparse.Namespace) -> ExitCode:
    decision = rollback(args.reason, get_settings())
    print(
        f"rolled back: champion is version {decision.candidate_version} again"
        f" (was {decision.champion_version})"
    )
    return ExitCode.OK
