"""Data commands: audit the labelled data, show its group-aware split, export reviews."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lung_model.cli.exit_codes import ExitCode
from lung_model.data.audit import audit, inspect, summary
from lung_model.data.feedback import export_reviews
from lung_model.data.split import PARTS, make_split, report
from lung_model.settings import CLASSES, get_settings


def cli_audit(args: argparse.Namespace) -> ExitCode:
    data_dir = args.data or get_settings().raw_data
    found = audit(inspect(data_dir, progress=True))
    print(summary(found))
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return ExitCode.ERROR if found["errors"] else ExitCode.OK


def cli_split(args: argparse.Namespace) -> ExitCode:
    data_dir: Path = args.data or get_settings().raw_data
    split = make_split(inspect(data_dir, progress=True))
    counts = report(split)
    print(f"data version {split.data_version}: {counts['n_groups']} pseudo-patient groups")
    for part in PARTS:
        line = ", ".join(
            f"{c} {counts['slices'][part][c]} ({counts['groups'][part][c]} groups)" for c in CLASSES
        )
        print(f"{part:>5}  {line}")
    print("no group and no duplicate crosses the split")
    if args.json:
        args.json.write_text(split.to_json())
    return ExitCode.OK


def cli_export(args: argparse.Namespace) -> ExitCode:
    result = export_reviews(get_settings())
    print(json.dumps(result, indent=2))
    if result["exported"]:
        print("data/raw.dvc changed: commit it to publish the new data version")
    return ExitCode.OK
