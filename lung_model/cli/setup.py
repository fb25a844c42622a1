"""The setup commands: database, data, and a summary of where everything is."""

from __future__ import annotations

import argparse

from lung_model.cli.exit_codes import ExitCode
from lung_model.data import dvc
from lung_model.platform import db
from lung_model.platform.orphan_runs import end_orphans_of
from lung_model.settings import Settings, get_settings


def cli_migrate(args: argparse.Namespace) -> ExitCode:
    url = db.database_url(get_settings())
    applied = db.migrate(url)
    print(f"database {db.redact(url)}: applied {applied or 'nothing (up to date)'}")
    return ExitCode.OK


def cli_data(args: argparse.Namespace) -> ExitCode:
    settings = get_settings()
    for line in dvc.import_dataset(settings, source=args.source).lines:
        print(line)
    return ExitCode.OK


def cli_stop_db(args: argparse.Namespace) -> ExitCode:
    stopped = db.stop_embedded(get_settings())
    print("embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL was running")
    return ExitCode.OK


def _training_runs(settings: Settings) -> list[str]:
    """Runs in progress, after ending the orphaned ones as KILLED: one line each."""
    try:
        sweep = end_orphans_of(settings, "python -m lung_model info")
    except Exception as error:  # the MLflow store may be unreachable: the rest still shows
        return [f"MLflow unavailable: {type(error).__name__}: {error}"]
    lines = [f"{sweep.in_progress} in progress"]
    lines += [f"ended {o.run_id} ({o.run_name}) as KILLED: {o.reason}" for o in sweep.ended]
    return lines


def cli_info(args: argparse.Namespace) -> ExitCode:
    settings = get_settings()
    url = db.database_url(settings)
    counts = db.row_counts(db.engine_for(url))
    lines = {
        "database": db.redact(url),
        "mlflow": settings.tracking_uri(),
        "LUNG_HOME": str(settings.home),
        "inbox": str(settings.inbox),
        "data version": dvc.data_version(),
        "DVC remote": dvc.remote_status(settings).describe(),
        "rows": ", ".join(f"{table} {n}" for table, n in counts.items()),
    }
    for key, value in lines.items():
        print(f"{key:>13}  {value}")
    for number, line in enumerate(_training_runs(settings)):
        print(f"{'training runs' if number == 0 else '':>13}  {line}")
    return ExitCode.OK
